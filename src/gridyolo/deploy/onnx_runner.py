"""Run an exported ONNX model with onnxruntime and numpy only (no torch).

The ONNX graph is the raw model (``uint8 [N, 3, size, size]`` -> ``[N, S, S, B*5 + C]``); this runner
does what ``InferenceModel`` does around it: letterbox (OpenCV), then decode and per-class NMS in numpy,
following ``decode.decode_grid`` step by step (see ``grid.py`` for what the raw numbers mean).

    runner = OnnxDetector("model.onnx")
    detections = runner([rgb_image])  # [{"boxes": [K, 4] xyxy px, "scores": [K], "labels": [K]}]
"""

from __future__ import annotations

import json

import numpy as np

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


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def raw_shape(info: dict) -> tuple[int, int, int]:
    """``(S, S, B*5 + C)``: the raw grid of one image, as the metadata says it is."""
    s = int(info["grid_size"])
    return s, s, int(info["num_boxes"]) * 5 + len(info["class_names"])


def check_raw_shape(shape, info: dict, path: str) -> None:
    """``shape`` (a raw output's, or the graph's with symbolic dimensions as strings or ``None``) is
    ``[N, S, S, B*5 + C]`` of ``info``; otherwise a ``GridyoloError``: decoding it would read another layout."""
    expected = raw_shape(info)
    shape = list(shape)
    fixed = [d if isinstance(d, int) else None for d in shape[1:]]
    if len(shape) != 4 or any(d is not None and d != e for d, e in zip(fixed, expected)):
        raise GridyoloError(f"{path}: the model's output shape {shape} does not match its metadata "
                            f"[N, {', '.join(map(str, expected))}] (grid {expected[0]}, "
                            f"{info['num_boxes']} boxes, {len(info['class_names'])} classes)")  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (as ``torchvision.ops.nms``: drop boxes with IoU > threshold); indices by score."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0/0, kept as torchvision does
            iou = inter / (area[i] + area[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


class OnnxDetector:
    """An exported ONNX file + the decode around it, with onnxruntime and numpy only."""

    def __init__(
        self, path: str, conf_threshold: float | None = None, iou_threshold: float = 0.45, max_detections: int = 100
    ) -> None:
        """``conf_threshold`` ``None``: the file's F1-optimal threshold (metadata), else 0.25."""
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise GridyoloError(f"{path}: not an ONNX model onnxruntime can load ({exc.__class__.__name__})") from None
        self.path = path
        self.info = read_metadata(self.session, path)
        self.size, self.num_boxes = int(self.info["input_size"]), int(self.info["num_boxes"])
        stored = self.info.get("conf_threshold")
        self.conf_threshold = conf_threshold if conf_threshold is not None else (stored if stored is not None else 0.25)
        self.iou_threshold, self.max_detections = iou_threshold, max_detections

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 [N, 3, size, size]`` -> raw grid ``[N, S, S, B*5 + C]``."""
        raw = self.session.run(None, {"images": np.ascontiguousarray(batch, dtype=np.uint8)})[0]
        check_raw_shape(raw.shape, self.info, self.path)
        return raw

    def decode(self, raw: np.ndarray, params: np.ndarray, sizes: np.ndarray, pre_nms_topk: int = 1000) -> list[dict]:
        """Raw grid -> detections in original pixels (``params``: letterbox, ``sizes``: (height, width))."""
        n, s = raw.shape[0], raw.shape[1]
        b = self.num_boxes
        box = _sigmoid(raw[..., : b * 5].reshape(n, s, s, b, 5))
        prob = _softmax(raw[..., b * 5 :])
        rows, cols = np.arange(s).reshape(1, s, 1, 1), np.arange(s).reshape(1, 1, s, 1)
        cx, cy = (cols + box[..., 0]) / s, (rows + box[..., 1]) / s
        half_w, half_h = box[..., 2] ** 2 / 2, box[..., 3] ** 2 / 2
        xyxy = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1).reshape(n, -1, 4) * self.size
        scores = (box[..., 4][..., None] * prob[:, :, :, None, :]).reshape(n, -1)  # [N, S*S*B*C]
        num_classes = prob.shape[-1]
        out = []
        for i in range(n):
            top = np.argsort(-scores[i], kind="stable")[:pre_nms_topk]
            top = top[scores[i, top] > self.conf_threshold]
            cand = boxes_to_original(xyxy[i, top // num_classes], params[i])
            height, width = sizes[i]
            cand = np.clip(cand, 0, [width, height, width, height]).astype(np.float32)
            labels, cand_scores = top % num_classes, scores[i, top]
            per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
            kept = [idx[nms(cand[idx], cand_scores[idx], self.iou_threshold)] for idx in per_class]
            kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
            kept = kept[np.argsort(-cand_scores[kept], kind="stable")][: self.max_detections]
            out.append({"boxes": cand[kept], "scores": cand_scores[kept], "labels": labels[kept].astype(np.int64)})
        return out

    def __call__(self, images: list[np.ndarray]) -> list[dict]:
        """RGB ``uint8`` HWC images of any sizes -> detections (letterbox by OpenCV, as in training)."""
        mode = self.info.get("resize_mode", "letterbox")
        pairs = [letterbox(image, self.size, mode) for image in images]
        batch = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
        params = np.stack([p[1] for p in pairs])
        sizes = np.array([image.shape[:2] for image in images], dtype=np.float32)
        return self.decode(self.raw(batch), params, sizes)
