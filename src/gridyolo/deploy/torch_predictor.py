"""The torch side of ``predictor.load_predictor``: a checkpoint (eager, or its ONNX Runtime export) or a
TorchScript file, as a ``Predictor``. Imported only when such a file is opened, so that an ``.onnx`` file
runs without torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gridyolo.core.decode import peak_scores
from gridyolo.core.decode_settings import DecodeSettings
from gridyolo.core.letterbox import letterbox
from gridyolo.deploy import ort_backend
from gridyolo.deploy.export import inference_from_checkpoint, load_torchscript
from gridyolo.errors import GridyoloError
from gridyolo.input_guards import check_input_size
from gridyolo.models import backbone_stride, check_head_input_size
from gridyolo.models.checkpoint import load_checkpoint


class Predictor:
    """A loaded model with torchvision's detection calling convention.

    ``predictor(images)``: a list of ``uint8`` RGB ``[3, H, W]`` tensors of any sizes -> one dict per
    image with ``boxes`` ``[K, 4]`` (xyxy, original-image pixels), ``scores`` ``[K]`` and ``labels``
    ``[K]`` (int64, indices into ``class_names``). The three stages are exposed for callers that batch
    or time them: ``preprocess`` (images -> ``uint8 [N, 3, size, size]`` batch, letterbox params
    ``[N, 4]``, original sizes ``[N, 2]``; ``preprocess_arrays`` for HWC numpy images), ``predict_raw``
    (batch -> raw grid ``[N, S, S, B*5 + C]``)
    and ``postprocess`` (decode + NMS, see ``core.decode.decode_grid``).

    ``info``: the model's metadata (``class_names``, ``input_size``, ``resize_mode``, ``num_boxes``,
    ``backbone``, ...), plus ``format`` (``checkpoint`` / ``torchscript`` / ``onnx``), ``backend`` (what
    runs the model stage), ``device``, ``notes`` (why a faster path was not taken), the decode settings
    in force (``DecodeSettings.info``: thresholds and ``conf_source``), ``model_conf_threshold`` (the
    model's own, ``None`` if it has none); ``epoch`` for a checkpoint run by torch.

    ``decode_settings`` is applied to the model stage here, the one place a loaded model's thresholds are
    set (a TorchScript file's decode reads them as module attributes).
    """

    def __init__(self, model: Any, info: dict[str, Any], decode: DecodeSettings) -> None:
        self.model = model
        self.decode_settings = decode
        model.conf_threshold = decode.conf_threshold
        model.iou_threshold = decode.iou_threshold
        model.max_detections = decode.max_detections
        self.info = {**info, **decode.info()}
        self.device = torch.device(info["device"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def input_size(self) -> int:
        return int(self.info["input_size"])

    @property
    def num_boxes(self) -> int:
        return int(self.info["num_boxes"])

    def preprocess(self, images: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``uint8 [3, H, W]`` RGB tensors -> see ``preprocess_arrays``."""
        for image in images:
            if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
                raise ValueError("each image must be a uint8 RGB tensor of shape [3, H, W]")
        return self.preprocess_arrays([image.permute(1, 2, 0).numpy() for image in images])

    def preprocess_arrays(self, images: list[np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
        """``uint8 [H, W, 3]`` RGB arrays -> ``(batch uint8 [N, 3, size, size]`` (channels-last memory),
        letterbox params ``[N, 4]``, original sizes ``[N, 2]`` = (height, width)).

        A TorchScript file resizes with its own ``preprocess`` (torch's bilinear), so that detect and
        eval run exactly what ships; a checkpoint with the OpenCV letterbox of training and validation."""
        if self.info["format"] == "torchscript":
            tensors = [torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) for image in images]
            with torch.inference_mode():
                return self.model.preprocess(tensors)
        pairs = [letterbox(np.ascontiguousarray(image), self.input_size, self.info["resize_mode"]) for image in images]
        batch = torch.from_numpy(np.stack([pair[0] for pair in pairs])).permute(0, 3, 1, 2)
        params = torch.from_numpy(np.stack([pair[1] for pair in pairs]))
        sizes = torch.tensor([image.shape[:2] for image in images], dtype=torch.float32).reshape(-1, 2)
        return batch, params, sizes

    @torch.inference_mode()
    def predict_raw(self, batch: Tensor) -> Tensor:
        return self.model.predict_raw(batch.to(self.device))

    @torch.inference_mode()
    def postprocess(self, raw: Tensor, params: Tensor, sizes: Tensor) -> list[dict[str, Tensor]]:
        return self.model.postprocess(raw, params.to(raw.device), sizes.to(raw.device))

    def peak_score(self, raw: Tensor) -> float:
        """The highest ``conf × P(class)`` of the batch before any threshold (``decode.peak_scores``)."""
        return float(peak_scores(raw, self.num_boxes).max()) if raw.shape[0] else 0.0

    def synchronize(self) -> None:
        """Wait for the device (stage timings on a GPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        batch, params, sizes = self.preprocess(images)
        return self.postprocess(self.predict_raw(batch), params, sizes)


def load_torch_predictor(
    weights: str,
    kind: str,
    backend: str,
    device: str,
    img_size: int | None,
    thresholds: tuple,
    channels_last: bool,
    trust_compiled: bool = False,
) -> Predictor:
    """``predictor.load_predictor`` for a ``checkpoint``, ``torchscript``, ``pt2`` or ``aoti`` file
    (``kind``); ``device`` resolved; ``thresholds``: (conf or ``None``, iou, max detections), resolved
    here against the model's stored threshold once the file is open."""
    if kind == "torchscript":
        model, info = _torchscript_file(weights, backend, device, img_size)
    elif kind in ("pt2", "aoti"):
        model, info = _pt2_file(weights, backend, device, img_size, trust_compiled)
    else:
        model, info = _checkpoint(weights, backend, device, img_size, channels_last)
    decode = DecodeSettings.resolve(thresholds[0], info["model_conf_threshold"], *thresholds[1:])
    return Predictor(model, {**info, "format": kind, "device": device}, decode)


def _torchscript_file(weights: str, backend: str, device: str, img_size: int | None) -> tuple:
    if backend == "onnxruntime":
        raise GridyoloError(f"{weights}: a TorchScript file runs with torch; --backend onnxruntime needs a "
                            f"checkpoint or an .onnx file")  # fmt: skip
    model, info = load_torchscript(weights, device)
    info["model_conf_threshold"] = info.get("conf_threshold")  # resolved when it was exported
    if img_size:
        check_input_size(img_size, backbone_stride(info["backbone"]))
        check_head_input_size(info.get("head", "pool"), info["input_size"], img_size)
        model.input_size = img_size
        info["input_size"] = img_size
    return model, {**info, "backend": "torch", "notes": []}


def _pt2_file(weights: str, backend: str, device: str, img_size: int | None, trust_compiled: bool) -> tuple:
    from gridyolo.deploy.pt2 import Pt2Model

    if backend == "onnxruntime" or not device.startswith("cpu"):
        raise GridyoloError(f"{weights}: a .pt2 program runs with torch on the CPU (--backend auto or torch, "
                            "--device cpu)")  # fmt: skip
    model = Pt2Model(weights, trust_compiled)
    if img_size and img_size != model.input_size:
        raise GridyoloError(f"{weights}: exported for {model.input_size} px input; --img-size {img_size} "
                            "needs a new export")  # fmt: skip
    info = {**model.info, "model_conf_threshold": model.info.get("conf_threshold")}
    return model, {**info, "backend": "torch", "notes": []}


def _checkpoint(weights: str, backend: str, device: str, img_size: int | None, channels_last: bool) -> tuple:
    read: dict[str, dict] = {}

    def read_checkpoint() -> dict:  # once, and only when needed
        if "checkpoint" not in read:
            read["checkpoint"] = load_checkpoint(weights)
        return read["checkpoint"]

    on_cpu = device.startswith("cpu")
    usable = on_cpu and ort_backend.onnxruntime_available()
    if backend == "onnxruntime" and not usable:
        raise GridyoloError("--backend onnxruntime needs the CPU and onnxruntime (pip install onnxruntime)")
    notes: list[str] = []
    if usable and backend != "torch":
        try:
            model = ort_backend.onnxruntime_from_checkpoint(weights, read_checkpoint, img_size, notes=notes)
        except GridyoloError as exc:
            if backend == "onnxruntime":
                raise GridyoloError(f"{weights}: {exc}") from None
            notes.append(f"{weights}: {exc}; running with torch")
        else:
            info = {**model.info, "model_conf_threshold": model.info.get("conf_threshold")}
            return model, {**info, "backend": "onnxruntime", "notes": notes}
    checkpoint = read_checkpoint()
    model, info = inference_from_checkpoint(weights, img_size, channels_last=channels_last, checkpoint=checkpoint)
    info = {**info, "model_conf_threshold": checkpoint["gridyolo"].get("conf_threshold"),
            "epoch": checkpoint.get("epoch"), "backend": "torch", "notes": notes}  # fmt: skip
    return model.to(device), info
