"""Pascal VOC AP@0.5 as the VOC devkit computes it: VOC07 11-point or area under the PR curve,
difficult objects ignored (a detection matching one is neither true nor false positive)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal

import numpy as np

from gridyolo.data.sample import ImageRecord


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    union = (box[2:] - box[:2]).prod() + (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) - inter
    return inter / np.maximum(union, 1e-12)


def _average_precision(recall: np.ndarray, precision: np.ndarray, use_07: bool) -> float:
    if use_07:  # mean of the best precision at recall >= 0, 0.1, ..., 1.0
        return float(
            np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)])
        )
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    i = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def match_detections(
    records: Sequence[ImageRecord],
    detections: Mapping[int, Mapping],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """The VOC devkit's matching, per class: ``(scores, tp, fp, positives)`` with the class's detections
    sorted by score (highest first), ``tp`` / ``fp`` 0/1 flags (both 0 for a detection matching a
    difficult object: ignored), ``positives`` the non-difficult objects. Each object matches once."""
    gt: dict[tuple[int, int], dict] = {}
    positives = np.zeros(num_classes, dtype=np.int64)
    for record in records:
        for c in range(num_classes):
            mask = record.labels == c
            gt[(record.image_id, c)] = {
                "boxes": record.boxes[mask].astype(np.float64),
                "difficult": record.difficult[mask],
                "used": np.zeros(int(mask.sum()), dtype=bool),
            }
            positives[c] += int((~record.difficult[mask]).sum())
    per_class_dets: dict[int, list[tuple[float, int, np.ndarray]]] = defaultdict(list)
    for image_id, det in detections.items():
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        for box, score, label in zip(
            boxes, np.asarray(det["scores"]).reshape(-1), np.asarray(det["labels"]).reshape(-1)
        ):
            per_class_dets[int(label)].append((float(score), int(image_id), box))

    out = []
    for c in range(num_classes):
        dets = sorted(per_class_dets.get(c, []), key=lambda d: -d[0])
        tp = np.zeros(len(dets))
        fp = np.zeros(len(dets))
        for i, (_, image_id, box) in enumerate(dets):
            entry = gt.get((image_id, c))
            if entry is None or len(entry["boxes"]) == 0:
                fp[i] = 1
                continue
            ious = _iou(box, entry["boxes"])
            j = int(ious.argmax())
            if ious[j] > iou_threshold:
                if entry["difficult"][j]:
                    continue
                if not entry["used"][j]:
                    tp[i], entry["used"][j] = 1, True
                else:
                    fp[i] = 1
            else:
                fp[i] = 1
        out.append((np.array([d[0] for d in dets], dtype=np.float64), tp, fp, int(positives[c])))
    return out


def voc_ap(
    records: Sequence[ImageRecord],
    detections: Mapping[int, Mapping],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict:
    """Per-class and mean AP of ``detections`` (``{image_id: {boxes xyxy px, scores, labels}}``).

    Returns ``{"map": mean over classes with ground truth, "per_class": {name: AP or -1}}``.
    Boxes are continuous pixel coordinates (no VOC "+1" on widths).
    """
    per_class = {}
    for name, (_, tp, fp, positives) in zip(class_names, match_detections(records, detections, len(class_names),
                                                                          iou_threshold)):  # fmt: skip
        if positives == 0:
            per_class[name] = -1.0
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / positives
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[name] = _average_precision(recall, precision, use_07_metric) if len(tp) else 0.0
    valid = [v for v in per_class.values() if v >= 0]
    return {"map": float(np.mean(valid)) if valid else 0.0, "per_class": per_class}


def best_f1_threshold(
    records: Sequence[ImageRecord], detections: Mapping[int, Mapping], num_classes: int, iou_threshold: float = 0.5
) -> tuple[float, float] | None:
    """``(score threshold, F1)``: the threshold that maximizes F1 over all classes pooled (a detection
    counts when its score is at least the threshold; matched at IoU ``iou_threshold`` as VOC does).
    ``None`` when there are no objects or no detections. This is ``detect``'s default ``--conf``."""
    matched = match_detections(records, detections, num_classes, iou_threshold)
    positives = sum(m[3] for m in matched)
    scores = np.concatenate([m[0] for m in matched]) if matched else np.zeros(0)
    if positives == 0 or len(scores) == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    tp = np.cumsum(np.concatenate([m[1] for m in matched])[order])
    fp = np.cumsum(np.concatenate([m[2] for m in matched])[order])
    f1 = 2 * tp / np.maximum(tp + fp + positives, 1e-12)
    last_of_score = np.append(scores[1:] != scores[:-1], True)  # a threshold keeps every tie, or none of them
    best = int(np.flatnonzero(last_of_score)[np.argmax(f1[last_of_score])])
    return float(scores[best]), float(f1[best])


def threshold_text(value: float, digits: int = 4) -> str:
    """``value`` shown with ``digits`` significant digits, rounded *down*: a threshold printed (and
    perhaps copied into ``--conf``) never exceeds the score of the detection that defines it."""
    exact = Decimal(value)  # the float's exact binary value
    if not exact.is_finite() or exact == 0:
        return f"{value:g}"
    step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    return f"{exact.quantize(step, rounding=ROUND_FLOOR).normalize():f}"
