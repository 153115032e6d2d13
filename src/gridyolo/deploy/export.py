"""``gridyolo export``: a checkpoint -> one TorchScript file (or an ONNX graph of the raw model).

The TorchScript file holds ``InferenceModel`` (resize, normalize, model, decode, NMS) and its
metadata as ``_extra_files["gridyolo.json"]``. Loading it needs torch and torchvision only:
torchvision because the NMS inside is ``torchvision::nms``, a custom op that ``import torchvision``
registers with TorchScript.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from typing import Any

import torch

from gridyolo import __version__
from gridyolo.core.decode_settings import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS, resolve_conf_threshold
from gridyolo.deploy.inference import InferenceModel
from gridyolo.deploy.onnx_runner import METADATA_KEY
from gridyolo.errors import GridyoloError
from gridyolo.files import atomic_path
from gridyolo.input_guards import check_input_size
from gridyolo.models import GridHead, backbone_stride, check_head_input_size
from gridyolo.models.checkpoint import detector_from_checkpoint
from gridyolo.weights_kind import weights_format

METADATA_FILE = METADATA_KEY  # one name for the metadata of every export format


@contextmanager
def _jit_without_deprecation_notice():
    """torch 2.9+ marks torch.jit as deprecated; TorchScript is still what gridyolo ships (and what
    runs without Python), so its FutureWarning is not shown to every user of export and detect."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        yield


def inference_from_checkpoint(
    path: str,
    img_size: int | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    channels_last: bool = True,
    checkpoint: dict | None = None,
) -> tuple[InferenceModel, dict[str, Any]]:
    """``InferenceModel`` (eager, eval mode) of a training checkpoint and its metadata dict
    (``checkpoint``: the file's content when the caller has already read it).

    ``channels_last`` is the default: 1.3-1.7× the eager NCHW forward on the CPU with the same
    detections (BENCHMARKS.md); exports inherit it."""
    detector, meta = detector_from_checkpoint(path, checkpoint=checkpoint)
    size = img_size or meta.input_size
    check_input_size(size, backbone_stride(meta.backbone))
    check_head_input_size(meta.head, meta.input_size, size)
    conf_threshold = resolve_conf_threshold(conf_threshold, meta.conf_threshold)
    model = InferenceModel(
        detector, size, meta.resize_mode, conf_threshold, iou_threshold, max_detections, channels_last=channels_last
    )
    info = {**meta.to_dict(), "input_size": size, "conf_threshold": conf_threshold, "iou_threshold": iou_threshold,
            "max_detections": max_detections, "format": "torchscript", "gridyolo_version": __version__}  # fmt: skip
    return model, info


def export_torchscript(weights: str, out: str, img_size: int | None = None, **thresholds: Any) -> dict[str, Any]:
    """Script ``InferenceModel`` of ``weights`` and save it to ``out`` with its metadata; returns the metadata."""
    model, info = inference_from_checkpoint(weights, img_size, **thresholds)
    with _jit_without_deprecation_notice(), atomic_path(out) as tmp:
        scripted = torch.jit.script(model)
        try:
            torch.jit.save(scripted, tmp, _extra_files={METADATA_FILE: json.dumps(info)})
        except RuntimeError as exc:  # torch reports a failed open or write as a RuntimeError
            raise GridyoloError(f"{out}: cannot write ({str(exc).splitlines()[0][-120:]})") from None
    return info


def load_torchscript(path: str, device: str = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load an exported file and its metadata (one-line ``GridyoloError`` if it is not one)."""
    import torchvision  # noqa: F401  -- registers torchvision::nms, which the scripted decode calls

    if weights_format(path) != "torchscript":
        raise GridyoloError(f"{path}: not a TorchScript file")
    extra = {METADATA_FILE: ""}
    try:
        with _jit_without_deprecation_notice():
            module = torch.jit.load(path, map_location=device, _extra_files=extra)
    except Exception as exc:
        raise GridyoloError(f"{path}: not a TorchScript file ({exc.__class__.__name__})") from None
    if not extra[METADATA_FILE]:
        raise GridyoloError(f"{path}: TorchScript file without gridyolo metadata (not exported by gridyolo)")
    return module.eval(), json.loads(extra[METADATA_FILE])


def export_info(path: str) -> dict[str, Any]:
    """The metadata of an exported TorchScript, ONNX or .pt2 file (``gridyolo export --info``)."""
    kind = weights_format(path)
    if kind == "checkpoint":
        raise GridyoloError(f"{path}: a checkpoint or pickle, not an export; --info reads TorchScript, ONNX or .pt2 "
                            "files")  # fmt: skip
    if kind == "torchscript":
        return load_torchscript(path)[1]
    if kind in ("pt2", "aoti"):
        from gridyolo.deploy.pt2 import archive_metadata

        return {**archive_metadata(path), "format": kind}
    import onnx

    try:
        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    except Exception as exc:
        raise GridyoloError(f"{path}: not an ONNX file ({exc.__class__.__name__})") from None
    if METADATA_FILE not in props:
        raise GridyoloError(f"{path}: ONNX file without gridyolo metadata (not exported by gridyolo)")
    return json.loads(props[METADATA_FILE])


def _fixed_size_pool(detector: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """The head's adaptive pool at a fixed input size: the identity or a plain average pool.

    ONNX cannot export an adaptive pool whose input size is only known at run time (Lite0's TF-SAME
    padding makes it so); at a fixed input size it is one of these two, with the same numbers.
    """
    with torch.no_grad():
        height, width = detector.backbone(detector.normalize(example)).shape[-2:]
    s = detector.grid_size
    if (height, width) == (s, s):
        return torch.nn.Identity()
    if height % s or width % s:
        raise GridyoloError(f"ONNX export: features {height}x{width} do not divide into the {s}x{s} grid; "
                            f"choose --img-size so that they do")  # fmt: skip
    return torch.nn.AvgPool2d((height // s, width // s))


def export_onnx(
    weights: str, out: str, img_size: int | None = None, opset: int = 17, checkpoint: dict | None = None
) -> dict[str, Any]:
    """Export the raw model (``uint8 [N, 3, size, size]`` -> raw grid) to ONNX; decode and NMS run
    outside it (``gridyolo.deploy.onnx_runner``, or ``ort_backend`` in detect). ``checkpoint``: the
    file's content when the caller has already read it."""
    try:
        import onnx
    except ImportError:
        raise GridyoloError("ONNX export needs the onnx package: pip install onnx") from None
    detector, meta = detector_from_checkpoint(weights, checkpoint=checkpoint)
    size = img_size or meta.input_size
    check_input_size(size, backbone_stride(meta.backbone))
    check_head_input_size(meta.head, meta.input_size, size)
    example = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    if isinstance(detector.head, GridHead):  # the space-to-depth heads have no adaptive part
        detector.head.pool = _fixed_size_pool(detector, example)
    # the TorchScript-based exporter: torch >= 2.9 defaults to dynamo, torch < 2.5 has no such argument
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    info = {**meta.to_dict(), "input_size": size, "format": "onnx", "gridyolo_version": __version__}
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # the input size is fixed by design: the tracer's "treated as a constant" notes (Lite0's TF-SAME
        # padding) describe exactly that
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            detector, (example,), tmp, input_names=["images"], output_names=["raw"], opset_version=opset,
            dynamic_axes={"images": {0: "batch"}, "raw": {0: "batch"}}, **legacy,
        )  # fmt: skip
        graph = onnx.load(tmp)
        onnx.helper.set_model_props(graph, {METADATA_FILE: json.dumps(info)})
        onnx.save(graph, tmp)
    return info


_FRESH_PROCESS_SCRIPT = """
import json, sys, torch, torchvision
extra = {"gridyolo.json": ""}
model = torch.jit.load(sys.argv[1], _extra_files=extra)
torch.save(model(torch.load(sys.argv[2])), sys.argv[3])
print(json.dumps({"gridyolo_imported": any(m.startswith("gridyolo") for m in sys.modules),
                  "class_names": json.loads(extra["gridyolo.json"])["class_names"]}))
"""


def fresh_process_parity(path: str, images: list[torch.Tensor], expected: list[dict], workdir: str) -> dict[str, Any]:
    """Run the exported file on ``images`` in a new Python process that imports only torch and
    torchvision, and compare with ``expected`` (the eager model's detections).

    Returns ``max_box_diff`` (px), ``same_labels`` (labels and order), ``gridyolo_imported`` (must be
    False) and ``detections`` (count).
    """
    path, workdir = os.path.abspath(path), os.path.abspath(workdir)
    inputs, outputs = os.path.join(workdir, "parity_inputs.pt"), os.path.join(workdir, "parity_outputs.pt")
    torch.save(images, inputs)
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", _FRESH_PROCESS_SCRIPT, path, inputs, outputs],
                          capture_output=True, text=True, cwd=workdir)  # fmt: skip
    if done.returncode != 0:
        raise GridyoloError(f"{path}: the exported file failed in a fresh process: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    got = torch.load(outputs, weights_only=True)
    diffs = [(e["boxes"] - g["boxes"]).abs().max().item() for e, g in zip(expected, got) if len(e["boxes"])]
    same = all(
        len(e["labels"]) == len(g["labels"]) and torch.equal(e["labels"], g["labels"]) for e, g in zip(expected, got)
    )
    os.remove(inputs)
    os.remove(outputs)
    return {"max_box_diff": max(diffs, default=0.0), "same_labels": same and len(got) == len(expected),
            "gridyolo_imported": report["gridyolo_imported"], "class_names": report["class_names"],
            "detections": sum(len(g["boxes"]) for g in got)}  # fmt: skip
