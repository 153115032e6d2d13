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

        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = json.loads(meta["gridyolo.json"])
        self.size, self.num_boxes = int(self.info["input_size"]), int(self.info["num_boxes"])
        stored = self.info.get("conf_threshold")
        self.conf_threshold = conf_threshold if conf_threshold is not None else (stored if stored is not None else 0.25)
        self.iou_threshold, self.max_detections = iou_threshold, max_detections

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 [N, 3, size, size]`` -> raw grid."""
        return self.session.run(None, {"images": np.ascontiguousarray(batch, dtype=np.uint8)})[0]

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
