"""Run plots (matplotlib PNG): PR curves per class, confusion matrix, label distribution, curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend, nothing set at import

from gridyolo.data.sample import ImageRecord
from gridyolo.evaluation.voc_ap import _iou


def confusion_matrix(
    records: Sequence[ImageRecord], detections: Mapping[int, Mapping], num_classes: int,
    conf_threshold: float, iou_threshold: float = 0.5,
) -> np.ndarray:  # fmt: skip
    """``[C + 1, C + 1]`` counts, rows = predicted class (last: missed object), columns = true class
    (last: background, a detection matching no object). Greedy matching by score, any class, among the
    detections scoring at least ``conf_threshold`` (the threshold in force, ``core.decode_settings``)."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for record in records:
        det = detections.get(record.image_id, {"boxes": [], "scores": [], "labels": []})
        scores = np.asarray(det["scores"], dtype=np.float64).reshape(-1)
        keep = np.flatnonzero(scores >= conf_threshold)
        keep = keep[np.argsort(-scores[keep])]
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(det["labels"]).reshape(-1)
        used = np.zeros(len(record.labels), dtype=bool)
        for i in keep:
            ious = _iou(boxes[i], record.boxes.astype(np.float64)) if len(record.labels) else np.zeros(0)
            ious[used] = 0
            j = int(ious.argmax()) if len(ious) else -1
            if j >= 0 and ious[j] > iou_threshold:
                used[j] = True
                matrix[int(labels[i]), int(record.labels[j])] += 1
            else:
                matrix[int(labels[i]), num_classes] += 1
        for j in np.flatnonzero(~used):
            matrix[num_classes, int(record.labels[j])] += 1
    return matrix


def plot_pr_curves(pr50: Mapping[str, Sequence[float]], path: str) -> None:
    """Precision against recall at IoU 0.5, one line per class (COCOeval's 101 recall points)."""
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    recall = np.linspace(0, 1, 101)
    for name, precision in pr50.items():
        p = np.asarray(precision, dtype=np.float64)
        if (p >= 0).any():
            ax.plot(recall, np.where(p < 0, np.nan, p), label=f"{name} ({np.mean(p[p >= 0]):.2f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall @ IoU 0.5")
    if len(pr50) <= 20:
        ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str, conf_threshold: float | None = None
) -> None:
    names = [*class_names, "background"]
    fig = Figure(figsize=(max(5, len(names) * 0.45), max(4, len(names) * 0.4)))
    ax = fig.subplots()
    ax.imshow(np.log1p(matrix), cmap="Blues")
    title = "confusion matrix" + (f" (score >= {conf_threshold:.3g})" if conf_threshold is not None else "")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="true", ylabel="predicted", title=title)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    if len(names) <= 25:
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
    _save(fig, path)


def plot_label_distribution(records: Sequence[ImageRecord], class_names: Sequence[str], path: str) -> None:
    """Boxes per class, and box sizes relative to their image."""
    labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, dtype=np.int64)
    rel = [np.stack([(r.boxes[:, 2] - r.boxes[:, 0]) / r.width, (r.boxes[:, 3] - r.boxes[:, 1]) / r.height], 1)
           for r in records if len(r.labels)]  # fmt: skip
    rel = np.concatenate(rel) if rel else np.zeros((0, 2))
    fig = Figure(figsize=(11, 4))
    a, b = fig.subplots(1, 2)
    a.bar(range(len(class_names)), np.bincount(labels, minlength=len(class_names)))
    a.set(title="boxes per class", xticks=range(len(class_names)))
    a.set_xticklabels(class_names, rotation=90, fontsize=7)
    b.hist2d(rel[:, 0], rel[:, 1], bins=30, range=[[0, 1], [0, 1]], cmap="Blues")
    b.set(title="box width / height (fraction of image)", xlabel="width", ylabel="height")
    _save(fig, path)


def plot_training_curves(history: Sequence[Mapping], path: str) -> None:
    """Epoch-mean training loss and validation mAP per epoch (``RunSummary``'s history rows)."""
    fig = Figure(figsize=(11, 4))
    a, b = fig.subplots(1, 2)
    rows = [h for h in history if h.get("train_loss") is not None]
    a.plot([h["epoch"] for h in rows], [h["train_loss"] for h in rows], marker="o")
    a.set(title="training loss (epoch mean)", xlabel="epoch")
    for key in ("map", "map50"):
        rows = [h for h in history if h.get(key) is not None]
        b.plot([h["epoch"] for h in rows], [h[key] for h in rows], marker="o", label=key)
    b.set(title="validation mAP", xlabel="epoch", ylim=(0, 1))
    b.legend()
    _save(fig, path)


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
