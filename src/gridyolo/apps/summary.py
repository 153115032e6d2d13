"""``gridyolo summary``: per layer the output shape, parameters, FLOPs and receptive field.

Shapes come from forward hooks on the leaf modules, FLOPs from ``torch.utils.flop_counter``
(multiply-adds count 2; BatchNorm and activations count 0, as PyTorch counts them), parameters from
each leaf's own tensors. The per-layer rows add up to PyTorch's totals for the whole model.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _geometry(module: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> dict | None:
    """Kernel, stride, padding and dilation of a spatial layer (adaptive pools: their effective kernel)."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        stride = (in_hw[0] // out_hw[0], in_hw[1] // out_hw[1])
        kernel = (math.ceil(in_hw[0] / out_hw[0]), math.ceil(in_hw[1] / out_hw[1]))
        return {"kernel": kernel, "stride": stride, "padding": (0, 0), "dilation": (1, 1)}
    if isinstance(module, _SPATIAL):
        padding = module.padding if not isinstance(module.padding, str) else 0
        dilation = getattr(module, "dilation", 1)
        return {
            "kernel": _pair(module.kernel_size),
            "stride": _pair(module.stride),
            "padding": _pair(padding),
            "dilation": _pair(dilation),
        }
    return None


def model_summary(model: nn.Module, img_size: int, batch_size: int = 1) -> dict:
    """Summarize ``model`` on a ``[batch_size, 3, img_size, img_size]`` input.

    Returns a JSON-ready dict: ``input_shape``, ``output_shape``, ``params``, ``trainable_params``,
    ``flops`` (PyTorch's total), ``layers`` (one dict per executed leaf module, in execution order:
    ``name``, ``type``, ``output_shape``, ``params``, ``flops``, ``receptive_field`` and ``jump`` in input
    pixels, plus ``kernel`` / ``stride`` / ``padding`` / ``dilation`` for convolutions and pools, and
    ``in_channels`` / ``out_channels`` / ``groups`` / ``bias`` for convolutions: their ``params`` is
    ``k_h * k_w * (in_channels / groups) * out_channels + out_channels * bias``).

    The receptive field follows the main path: shortcut projections (ResNet's ``downsample``) are
    listed but do not enlarge it.
    """
    rows: list[dict] = []
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            x = inputs[0] if inputs else None
            in_hw = tuple(x.shape[-2:]) if isinstance(x, torch.Tensor) and x.dim() == 4 else None
            out_shape = list(output.shape) if isinstance(output, torch.Tensor) else []
            out_hw = tuple(out_shape[-2:]) if len(out_shape) == 4 else None
            row = {
                "name": name,
                "type": type(module).__name__,
                "output_shape": out_shape,
                "params": sum(p.numel() for p in module.parameters(recurse=False)),
            }
            if in_hw and out_hw:
                geometry = _geometry(module, in_hw, out_hw)
                if geometry:
                    row.update({k: list(v) for k, v in geometry.items()})
            if isinstance(module, nn.Conv2d):  # so F*F*(D/groups)*K + K*bias can be checked on every row
                row.update(in_channels=module.in_channels, out_channels=module.out_channels, groups=module.groups,
                           bias=module.bias is not None)  # fmt: skip
            rows.append(row)

        return record

    for name, module in model.named_modules():
        if name and not list(module.children()):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            output = model(torch.zeros(batch_size, 3, img_size, img_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    counts = counter.get_flop_counts()
    prefix = type(model).__name__ + "."
    rf, jump = 1, 1
    for row in rows:
        row["flops"] = int(sum(counts.get(prefix + row["name"], {}).values()))
        if "kernel" in row and "downsample" not in row["name"].split("."):
            k, s, d = row["kernel"][0], row["stride"][0], row["dilation"][0]
            rf += (k - 1) * d * jump
            jump *= s
        row["receptive_field"], row["jump"] = rf, jump
    total_flops = int(counter.get_total_flops())
    outside = total_flops - sum(r["flops"] for r in rows)
    if outside:  # FLOPs of ops called outside any leaf module, so the rows still add up
        rows.append({"name": "(outside leaf modules)", "type": "", "output_shape": [], "params": 0, "flops": outside})
    return {
        "backbone": getattr(model, "backbone_name", type(model).__name__),
        "input_shape": [batch_size, 3, img_size, img_size],
        "output_shape": list(output.shape),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": total_flops,
        "layers": rows,
    }


def format_summary(summary: dict) -> str:
    """The summary as a text table."""
    header = (f"{'layer':<38} {'type':<18} {'output':<20} {'k/s/p':<9} {'groups':>6} {'bias':>4} {'params':>10} "
              f"{'MFLOPs':>10} {'RF':>5}")  # fmt: skip
    lines = [f"{summary['backbone']}  input {summary['input_shape']}", header, "-" * len(header)]
    for row in summary["layers"]:
        ksp = f"{row['kernel'][0]}/{row['stride'][0]}/{row['padding'][0]}" if "kernel" in row else ""
        shape = "x".join(map(str, row["output_shape"][1:]))
        groups, bias = (str(row["groups"]), "yes" if row["bias"] else "no") if "groups" in row else ("", "")
        lines.append(
            f"{row['name'][-38:]:<38} {row['type'][:18]:<18} {shape:<20} {ksp:<9} {groups:>6} {bias:>4} "
            f"{row['params']:>10,} {row['flops'] / 1e6:>10.1f} {row.get('receptive_field', ''):>5}"
        )
    lines += [
        "-" * len(header),
        f"output {summary['output_shape']}  params {summary['params']:,}  "
        f"GFLOPs {summary['flops'] / 1e9:.2f} (multiply-add = 2)",
    ]
    return "\n".join(lines)


def summarized_model(
    weights: str | None = None,
    config: str | None = None,
    backbone: str | None = None,
    classes: int | None = None,
    grid: int | None = None,
    boxes: int | None = None,
    img_size: int | None = None,
) -> tuple[nn.Module, int]:
    """The model ``gridyolo summary`` describes and its input size: exactly a checkpoint's, or a training
    config's (its head, grid and classes), or one built from the flags."""
    from gridyolo.errors import GridyoloError
    from gridyolo.models import build_detector, check_head_input_size

    if weights and config:
        raise GridyoloError("summary takes --weights or --config, not both")
    given = [name for name, v in (("--backbone", backbone), ("--classes", classes), ("--grid", grid),
                                  ("--boxes", boxes)) if v is not None]  # fmt: skip
    if (weights or config) and given:
        raise GridyoloError(f"{', '.join(given)}: the model comes from {'--weights' if weights else '--config'}")
    if weights:
        from gridyolo.models.checkpoint import detector_from_checkpoint

        model, meta = detector_from_checkpoint(weights)
        check_head_input_size(meta.head, meta.input_size, img_size or meta.input_size)
        return model, img_size or meta.input_size
    if config:
        spec = _model_of_config(config)
        model = build_detector(spec["backbone"], spec["classes"], spec["grid_size"], spec["num_boxes"], None,
                               spec["head_channels"], spec["head"], spec["input_size"])  # fmt: skip
        check_head_input_size(spec["head"], spec["input_size"], img_size or spec["input_size"])
        return model, img_size or spec["input_size"]
    model = build_detector(backbone or "resnet18", num_classes=classes or 20, grid_size=grid or 7, num_boxes=boxes or 2)
    return model, img_size or 448


def _model_of_config(path: str) -> dict:
    """Backbone, head and class count of a training config (the defaults of ``GridYoloModule`` where
    it is silent; the class count from ``data.classes`` or, failing that, the training split)."""
    import inspect

    import yaml

    from gridyolo.data.classes import parse_class_list
    from gridyolo.errors import GridyoloError
    from gridyolo.input_guards import require_regular_file

    require_regular_file(path, "config")
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GridyoloError(f"{path}: malformed YAML ({exc.__class__.__name__})") from None
    model, data = config.get("model") or {}, config.get("data") or {}
    if not isinstance(model, dict) or not isinstance(data, dict):
        raise GridyoloError(f"{path}: 'model' and 'data' must be mappings")
    from gridyolo.training.module import GridYoloModule

    defaults = {k: p.default for k, p in inspect.signature(GridYoloModule.__init__).parameters.items()}
    spec = {k: model.get(k, defaults[k]) for k in ("backbone", "grid_size", "num_boxes", "head_channels", "head")}
    spec["input_size"] = data.get("input_size", defaults["input_size"])
    classes = parse_class_list(data.get("classes")) if data.get("format", "coco") == "voc" else None
    if not classes:
        from gridyolo.data.readers import build_reader

        root = data.get("root")
        if not root:
            raise GridyoloError(f"{path}: data.root is needed to count the classes")
        base = os.path.dirname(os.path.abspath(path))
        root = root if os.path.isabs(str(root)) or os.path.exists(str(root)) else os.path.join(base, str(root))
        classes = build_reader(root, data.get("format", "coco"), data.get("train_split", "train"),
                               classes=data.get("classes", "voc")).info.class_names  # fmt: skip
    spec["classes"] = len(classes)
    return spec
