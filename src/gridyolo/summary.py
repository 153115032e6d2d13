"""``gridyolo summary``: per layer the output shape, parameters, FLOPs and receptive field.

Shapes come from forward hooks on the leaf modules, FLOPs from ``torch.utils.flop_counter``
(multiply-adds count 2; BatchNorm and activations count 0, as PyTorch counts them), parameters from
each leaf's own tensors. The per-layer rows add up to PyTorch's totals for the whole model.
"""

from __future__ import annotations

import math

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
    pixels, plus ``kernel`` / ``stride`` / ``padding`` / ``dilation`` for convolutions and pools).

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
    header = f"{'layer':<38} {'type':<18} {'output':<20} {'k/s/p':<9} {'params':>10} {'MFLOPs':>10} {'RF':>5}"
    lines = [f"{summary['backbone']}  input {summary['input_shape']}", header, "-" * len(header)]
    for row in summary["layers"]:
        ksp = f"{row['kernel'][0]}/{row['stride'][0]}/{row['padding'][0]}" if "kernel" in row else ""
        shape = "x".join(map(str, row["output_shape"][1:]))
        lines.append(
            f"{row['name'][-38:]:<38} {row['type'][:18]:<18} {shape:<20} {ksp:<9} {row['params']:>10,} "
            f"{row['flops'] / 1e6:>10.1f} {row.get('receptive_field', ''):>5}"
        )
    lines += [
        "-" * len(header),
        f"output {summary['output_shape']}  params {summary['params']:,}  "
        f"GFLOPs {summary['flops'] / 1e9:.2f} (multiply-add = 2)",
    ]
    return "\n".join(lines)
