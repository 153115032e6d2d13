"""``load_predictor``: the one way to open a weights file (a training checkpoint, an exported
TorchScript or ONNX file) and get something that maps images to detections.

``detect``, ``eval``, ``explain``, the demo and the benchmarks all open weights here. What runs:

- an ONNX file: ``onnx_runner.OnnxDetector``: ONNX Runtime, OpenCV letterbox, numpy decode + NMS.
  **No torch is imported** (this module and the ONNX path are torch-free), so ``gridyolo detect`` and
  ``gridyolo eval`` of an ``.onnx`` file run on the runtime install, without torch;
- a checkpoint with ``backend="auto"`` on the CPU: ONNX Runtime (the fastest CPU path measured), from
  an export made and checked against the eager model once (``ort_backend``); when that export fails
  or differs, the eager model, with a note saying why. ``backend="torch"``, or another device: the eager
  ``InferenceModel`` in channels_last (``torch_predictor``);
- a TorchScript file: that file (torch), its own resize included;
- a ``.pt2`` ExportedProgram or AOTInductor package (``pt2.Pt2Model``): its raw output, with the OpenCV
  letterbox and ``decode_grid`` around it (torch, CPU).

Pre-processing is the OpenCV letterbox that training and validation use (``core.letterbox``), then
``core.decode.decode_grid`` (its numpy twin for an ONNX file). (An exported TorchScript file's own
``forward`` resizes with torch instead, to run without gridyolo; ``gridyolo eval`` of a TorchScript file
scores that ``forward``, see ``evaluation.runner``.)

Every predictor has the same calling convention (``torch_predictor.Predictor``): ``info``,
``class_names``, ``input_size``, ``num_boxes``, ``preprocess_arrays``, ``predict_raw``, ``postprocess``,
``peak_score``, ``synchronize`` and ``__call__``; an ONNX file's works on numpy arrays.
"""

from __future__ import annotations

from typing import Any

from gridyolo.core.decode_settings import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS
from gridyolo.errors import GridyoloError
from gridyolo.weights_kind import weights_format

BACKENDS = ("auto", "torch", "onnxruntime")
TORCH_STACK = ("torch", "torchvision", "onnx")  # what gridyolo[torch] adds to the runtime install


def load_predictor(
    weights: str,
    backend: str = "auto",
    device: str = "cpu",
    img_size: int | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    channels_last: bool = True,
    trust_compiled: bool = False,
) -> Any:
    """Open ``weights`` (told apart by content, see ``formats.weights_format``) as a predictor.

    Args:
        backend: ``auto``, ``torch`` or ``onnxruntime`` (see the module docstring).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (resolved here: ``input_guards.resolve_device``; an
            ONNX file runs on the CPU and resolves ``auto`` without importing torch).
        img_size: the square input size; default: the one it was trained (or exported) at.
        conf_threshold: ``None``: the model's own (F1-optimal on its validation split, stored at
            training), else 0.25.
        iou_threshold, max_detections: NMS IoU and detections kept per image.
        channels_last: a checkpoint run by torch runs in NHWC (faster on the CPU; numbers equal to
            float rounding). ``False`` reproduces a validation run in NCHW to the last digit.
        trust_compiled: load an AOTInductor package (compiled machine code; refused otherwise).

    A checkpoint is read at most once; an ONNX Runtime cache hit does not read it at all.
    """
    if backend not in BACKENDS:
        raise GridyoloError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    kind = weights_format(weights)
    thresholds = (conf_threshold, iou_threshold, max_detections)  # resolved once the file's own is known
    if kind == "onnx":
        return _onnx_file(weights, backend, device, img_size, thresholds)
    try:
        from gridyolo.deploy.torch_predictor import load_torch_predictor
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in TORCH_STACK:
            raise
        raise GridyoloError(f"{weights}: a {kind} file runs with torch ({exc.name} is not installed): install "
                            "gridyolo[torch], or detect with its ONNX export") from None  # fmt: skip
    from gridyolo.input_guards import resolve_device

    return load_torch_predictor(weights, kind, backend, resolve_device(device), img_size, thresholds, channels_last,
                                trust_compiled)  # fmt: skip


def _onnx_file(weights: str, backend: str, device: str, img_size: int | None, thresholds: tuple) -> Any:
    if backend == "torch" or str(device).strip().lower() not in ("auto", "cpu"):
        raise GridyoloError(f"{weights}: an ONNX file runs with --backend onnxruntime on the CPU")
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        raise GridyoloError(f"{weights}: running an ONNX file needs onnxruntime (pip install onnxruntime)")
    from gridyolo.deploy.onnx_runner import OnnxDetector

    model = OnnxDetector(weights, *thresholds)  # resolves them against the file's stored threshold
    if img_size and img_size != model.input_size:
        raise GridyoloError(f"{weights}: exported for {model.input_size} px input; --img-size {img_size} "
                            f"needs a new export")  # fmt: skip
    return model
