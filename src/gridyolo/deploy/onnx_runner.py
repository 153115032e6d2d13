"""Run an exported ONNX model with onnxruntime and numpy only (no torch): what ``gridyolo detect`` and
``gridyolo eval`` run for an ``.onnx`` file, with or without torch installed.

The ONNX graph is the raw model (``uint8 [N, 3, size, size]`` -> ``[N, S, S, B*5 + C]``); this runner
does what ``InferenceModel`` does around it: letterbox (OpenCV, as training and validation), then
decode and per-class NMS in numpy, following ``decode.decode_grid`` step by step in float32 (see
``grid.py`` for what the raw numbers mean); the boxes agree with the torch decode within 1e-4 px.

    runner = OnnxDetector("model.onnx")
    detections = runner([rgb_image])  # [{"boxes": [K, 4] xyxy px, "scores": [K], "labels": [K]}]

``OnnxDetector`` has the calling convention of ``predictor.Predictor`` (``preprocess_arrays``,
``predict_raw``, ``postprocess``, ``info``), with numpy arrays where that has tensors.
"""

from __future__ import annotations

import json

import numpy as np

from gridyolo.core.decode_settings import (
    DEFAULT_CONF_THRESHOLD,
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_MAX_DETECTIONS,
    DecodeSettings,
)
from gridyolo.core.letterbox import boxes_to_original, letterbox
from gridyolo.errors import GridyoloError

METADATA_KEY = "gridyolo.json"  # deploy.export.METADATA_FILE (export imports torch; this module must not)


def read_metadata(session, path: str) -> dict:
    """The gridyolo metadata of an ONNX Runtime session, checked: what decoding relies on (input size,
    grid size, boxes per cell, class names) is present and of the right type, and the model's output
    shape agrees with it. Anything else is one ``GridyoloError`` naming the file."""
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise GridyoloError(f"{path}: ONNX file without gridyolo metadata (not exported by gridyolo)")
    try:
        info = json.loads(meta[METADATA_KEY])
    except (ValueError, RecursionError):
        raise GridyoloError(f"{path}: its gridyolo metadata is not valid JSON") from None
    positive = ("input_size", "grid_size", "num_boxes")
    names = info.get("class_names") if isinstance(info, dict) else None
    if not isinstance(info, dict) or not all(_positive_int(info.get(key)) for key in positive) or not (
        isinstance(names, list) and names and all(isinstance(name, str) for name in names)
    ):
        raise GridyoloError(f"{path}: its gridyolo metadata lacks a valid input_size, grid_size, num_boxes or "
                            "class_names")  # fmt: skip
    outputs = session.get_outputs()
    if len(outputs) != 1:
        raise GridyoloError(f"{path}: {len(outputs)} outputs; a gridyolo model has one, the raw grid")
    check_raw_shape(outputs[0].shape, info, path)
    return info


def cpu_session(path: str):
    """An ONNX Runtime session of ``path`` on the CPU (one-line ``GridyoloError`` if it cannot load)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ORT's threads busy-wait after each run by default; in detect they would steal the cores that
    # pre-processing, decode+NMS, drawing and the reader thread need between two model runs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise GridyoloError(f"{path}: not an ONNX model onnxruntime can load ({exc.__class__.__name__})") from None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def raw_shape(info: dict) -> tuple[int, int, int]:
    """``(S, S, B*5 + C)``: the raw grid of one image, as the metadata says it is."""
    s = int(info["grid_size"])
    return s, s, int(info["num_boxes"]) * 5 + len(info["class_names"])


def check_raw_shape(shape, info: dict, path: str, batch: int | None = None) -> None:
    """``shape`` (a raw output's, or the graph's with symbolic dimensions as strings or ``None``) is
    ``[N, S, S, B*5 + C]`` of ``info``, with ``N == batch`` when the batch is known (a run); otherwise a
    ``GridyoloError``: decoding it would read another layout, or give one image another's grid."""
    expected = raw_shape(info)
    shape = list(shape)
    fixed = [d if isinstance(d, int) else None for d in shape[1:]]
    if len(shape) != 4 or any(d is not None and d != e for d, e in zip(fixed, expected)):
        raise GridyoloError(f"{path}: the model's output shape {shape} does not match its metadata "
                            f"[N, {', '.join(map(str, expected))}] (grid {expected[0]}, "
                            f"{info['num_boxes']} boxes, {len(info['class_names'])} classes)")  # fmt: skip
    if batch is not None and shape[0] != batch:
        raise GridyoloError(f"{path}: the model's output shape {shape} does not match its metadata: "
                            f"{shape[0]} grid(s) for a batch of {batch} image(s)")  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (as ``torchvision.ops.nms``: drop boxes with IoU > threshold); indices by score.

    The IoU matrix is computed once (float32, as torchvision); the greedy pass then costs one row
    operation per kept box."""
    order = np.argsort(-scores, kind="stable")
    boxes = np.asarray(boxes, dtype=np.float32)[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    w = np.clip(np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0]),
                0, None)  # fmt: skip
    h = np.clip(np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1]),
                0, None)  # fmt: skip
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0/0, kept as torchvision does
        overlaps = inter / (area[:, None] + area[None, :] - inter) > iou_threshold
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i]
    return order[np.asarray(keep, dtype=np.int64)]


def decode_numpy(
    raw: np.ndarray,
    num_boxes: int,
    input_size: int,
    params: np.ndarray,
    sizes: np.ndarray,
    conf_threshold: float = DEFAULT_CONF_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    pre_nms_topk: int = 1000,
) -> list[dict]:
    """``decode.decode_grid`` in numpy, step by step in float32: raw ``(N, S, S, B*5 + C)`` -> per image
    ``boxes`` float32 ``[K, 4]`` xyxy in original pixels (``params``: ``[N, 4]`` letterbox, ``sizes``:
    ``[N, 2]`` (height, width) to clip to), ``scores`` ``[K]``, ``labels`` int64 ``[K]``, by score."""
    n, s = raw.shape[0], raw.shape[1]
    b = num_boxes
    raw = raw.astype(np.float32, copy=False)
    box = _sigmoid(raw[..., : b * 5].reshape(n, s, s, b, 5))
    prob = _softmax(raw[..., b * 5 :])
    grid = np.arange(s, dtype=np.float32)
    rows, cols = grid.reshape(1, s, 1, 1), grid.reshape(1, 1, s, 1)
    cx, cy = (cols + box[..., 0]) / s, (rows + box[..., 1]) / s
    half_w, half_h = box[..., 2] * box[..., 2] / 2, box[..., 3] * box[..., 3] / 2
    xyxy = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1).reshape(n, -1, 4)
    xyxy = xyxy * np.float32(input_size)
    scores = (box[..., 4][..., None] * prob[:, :, :, None, :]).reshape(n, -1)  # [N, S*S*B*C]
    num_classes = prob.shape[-1]
    out = []
    for i in range(n):
        top = np.argsort(-scores[i], kind="stable")[:pre_nms_topk]
        top = top[scores[i, top] > conf_threshold]
        cand = boxes_to_original(xyxy[i, top // num_classes], params[i])
        height, width = np.asarray(sizes[i], dtype=np.float32)
        cand = np.clip(cand, 0, np.array([width, height, width, height], dtype=np.float32)).astype(np.float32)
        labels, cand_scores = top % num_classes, scores[i, top]
        per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        kept = [idx[nms(cand[idx], cand_scores[idx], iou_threshold)] for idx in per_class]
        kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        kept = kept[np.argsort(-cand_scores[kept], kind="stable")][:max_detections]
        out.append({"boxes": cand[kept].reshape(-1, 4), "scores": cand_scores[kept],
                    "labels": labels[kept].astype(np.int64)})  # fmt: skip
    return out


class OnnxDetector:
    """An exported ONNX file + the decode around it, with onnxruntime and numpy only.

    ``predictor.load_predictor`` opens every ``.onnx`` file as one of these (``backend`` onnxruntime,
    ``format`` onnx); ``info`` then also holds what ``Predictor.info`` holds.
    """

    def __init__(
        self,
        path: str,
        conf_threshold: float | None = None,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        pre_nms_topk: int = 1000,
    ) -> None:
        """``conf_threshold`` ``None``: the file's F1-optimal threshold (metadata), else the default
        (``DecodeSettings.resolve``)."""
        self.session = cpu_session(path)
        self.path = path
        self.info = read_metadata(self.session, path)
        self.size, self.num_boxes = int(self.info["input_size"]), int(self.info["num_boxes"])
        self.pre_nms_topk = pre_nms_topk
        stored = self.info.get("conf_threshold")
        self.info.update(format="onnx", backend="onnxruntime", device="cpu", notes=[], model_conf_threshold=stored)
        self.use(DecodeSettings.resolve(conf_threshold, stored, iou_threshold, max_detections))

    def use(self, decode: DecodeSettings) -> None:
        """Decode with these settings from now on (``info`` reports them)."""
        self.decode_settings = decode
        self.info.update(decode.info())

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def input_size(self) -> int:
        return self.size

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 [N, 3, size, size]`` -> raw grid ``[N, S, S, B*5 + C]``."""
        raw = self.session.run(None, {"images": np.ascontiguousarray(batch, dtype=np.uint8)})[0]
        check_raw_shape(raw.shape, self.info, self.path, batch=len(batch))
        return raw

    predict_raw = raw

    def preprocess_arrays(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``uint8 [H, W, 3]`` RGB arrays -> ``(batch uint8 [N, 3, size, size]``, letterbox params
        ``[N, 4]``, original sizes ``[N, 2]`` = (height, width)) (letterbox by OpenCV, as in training)."""
        mode = self.info.get("resize_mode", "letterbox")
        pairs = [letterbox(np.ascontiguousarray(image), self.size, mode) for image in images]
        batch = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
        params = np.stack([p[1] for p in pairs])
        sizes = np.array([image.shape[:2] for image in images], dtype=np.float32).reshape(-1, 2)
        return batch, params, sizes

    def postprocess(self, raw: np.ndarray, params: np.ndarray, sizes: np.ndarray) -> list[dict]:
        return self.decode(raw, np.asarray(params), np.asarray(sizes), self.pre_nms_topk)

    def peak_score(self, raw: np.ndarray) -> float:
        """The highest ``conf × P(class)`` of the batch before any threshold (``decode.peak_scores``)."""
        n, s, b = raw.shape[0], raw.shape[1], self.num_boxes
        conf = _sigmoid(raw[..., : b * 5].reshape(n, s, s, b, 5)[..., 4])
        return float((conf * _softmax(raw[..., b * 5 :]).max(axis=-1, keepdims=True)).max()) if n else 0.0

    def synchronize(self) -> None:
        """Nothing to wait for: ONNX Runtime returns when the CPU is done (``Predictor.synchronize``)."""

    def decode(self, raw: np.ndarray, params: np.ndarray, sizes: np.ndarray, pre_nms_topk: int = 1000) -> list[dict]:
        """Raw grid -> detections in original pixels (``params``: letterbox, ``sizes``: (height, width))."""
        d = self.decode_settings
        return decode_numpy(raw, self.num_boxes, self.size, params, sizes, d.conf_threshold, d.iou_threshold,
                            d.max_detections, pre_nms_topk)  # fmt: skip

    def __call__(self, images: list) -> list[dict]:
        """Images of any sizes -> detections. Each image: an RGB ``uint8`` HWC numpy array, or (as
        ``Predictor`` takes them) a ``uint8 [3, H, W]`` tensor; results are numpy arrays."""
        arrays = [image if isinstance(image, np.ndarray) else np.asarray(image).transpose(1, 2, 0) for image in images]
        batch, params, sizes = self.preprocess_arrays(arrays)
        return self.postprocess(self.raw(batch), params, sizes)
