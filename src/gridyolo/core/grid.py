"""The grid parameterization: what the raw model output means, in one place.

Raw output ``(N, S, S, B*5 + C)``; for the cell at row ``i`` (y), column ``j`` (x) the last dimension
holds B groups ``(tx, ty, tw, th, tc)`` followed by C class logits (YOLOv1's layout). Their meaning:

- ``x = sigmoid(tx)``, ``y = sigmoid(ty)``: the box centre inside its cell, in cell units ``[0, 1]``;
  centre in the input image ``((j + x) / S, (i + y) / S)`` (fractions of the input width / height).
- ``sqrt_w = sigmoid(tw)``, ``sqrt_h = sigmoid(th)``: square roots of the box width / height as
  fractions of the input (YOLOv1 predicts square roots so that errors on small boxes weigh more).
  The sigmoid keeps them in ``(0, 1)``, so no square root of a negative prediction is ever taken.
- ``conf = sigmoid(tc)``: the predicted IoU between this box and the object it is responsible for.
- ``class_prob = softmax(logits)``: P(class | object in the cell), one distribution per cell.

The loss (``loss.py``) and the decoder (``decode.py``) both go through ``activate`` and
``cell_boxes``; ``encode_raw`` is the exact inverse, used to build perfect predictions in tests.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gridyolo.core.targets import BatchTargets

# Logit clamp for encode_raw: sigmoid(±16) is within 1.2e-7 of 0 / 1, below float32 resolution near 1.
_LOGIT_LIMIT = 16.0


class GridPrediction(NamedTuple):
    """Activated grid. ``xy``, ``sqrt_wh``: ``[N, S, S, B, 2]``; ``conf``: ``[N, S, S, B]``;
    ``class_prob``: ``[N, S, S, C]``."""

    xy: Tensor
    sqrt_wh: Tensor
    conf: Tensor
    class_prob: Tensor


def activate(raw: Tensor, num_boxes: int) -> GridPrediction:
    """Apply the parameterization to a raw ``(N, S, S, B*5 + C)`` grid."""
    n, s1, s2, _ = raw.shape
    boxes = raw[..., : num_boxes * 5].reshape(n, s1, s2, num_boxes, 5).sigmoid()
    class_prob = raw[..., num_boxes * 5 :].softmax(dim=-1)
    return GridPrediction(boxes[..., 0:2], boxes[..., 2:4], boxes[..., 4], class_prob)


def cell_boxes(xy: Tensor, sqrt_wh: Tensor) -> Tensor:
    """Boxes of every predictor as xyxy fractions of the input: ``[N, S, S, B, 4]``.

    Args:
        xy: ``[N, S, S, B, 2]`` centre offsets inside the cell.
        sqrt_wh: ``[N, S, S, B, 2]`` square roots of the width / height fractions.
    """
    s_rows, s_cols = xy.shape[1], xy.shape[2]
    cols = torch.arange(s_cols, device=xy.device, dtype=xy.dtype).view(1, 1, s_cols, 1)
    rows = torch.arange(s_rows, device=xy.device, dtype=xy.dtype).view(1, s_rows, 1, 1)
    cx = (cols + xy[..., 0]) / s_cols
    cy = (rows + xy[..., 1]) / s_rows
    half_w = sqrt_wh[..., 0] * sqrt_wh[..., 0] / 2
    half_h = sqrt_wh[..., 1] * sqrt_wh[..., 1] / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


class CellTargets(NamedTuple):
    """One row per object that owns a cell. ``index``: position in the concatenated input objects;
    ``batch``, ``row``, ``col``: its cell; ``xy``: ``[M, 2]`` centre offset in the cell;
    ``sqrt_wh``: ``[M, 2]``; ``box``: ``[M, 4]`` xyxy fractions of the input; ``label``: ``[M]``."""

    index: Tensor
    batch: Tensor
    row: Tensor
    col: Tensor
    xy: Tensor
    sqrt_wh: Tensor
    box: Tensor
    label: Tensor


def cell_index(fraction: Tensor, grid_size: int) -> Tensor:
    """int64 cell index along one axis of centres at ``fraction`` of the input (any shape):
    ``floor(fraction * S)`` clamped to ``[0, S - 1]``."""
    return (fraction * grid_size).floor().clamp(0, grid_size - 1).long()


def assign_cells(boxes: Tensor, labels: Tensor, batch: Tensor, grid_size: int) -> CellTargets:
    """Give each object the cell that holds its centre; one object per cell.

    The cell index is ``floor(centre * S)`` clamped to ``[0, S - 1]``, so a centre exactly on a cell
    border goes to the cell right / below it and a centre on the right or bottom image edge to the
    last cell. When several objects of one image fall in the same cell, the one with the largest box
    area wins (ties: the one listed first); the others get no cell and are not targets (YOLOv1 has one
    class per cell). Deterministic on every device: no scatter with duplicate indices.

    Args:
        boxes: ``[M, 4]`` xyxy as fractions of the input (``x / W``, ``y / H``).
        labels: ``[M]`` int64 labels.
        batch: ``[M]`` int64 index of each object's image in the batch.
        grid_size: S.
    """
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    col, row = cell_index(cx, grid_size), cell_index(cy, grid_size)
    key = (batch * grid_size + row) * grid_size + col
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.sort(-area, stable=True).indices  # largest first, ties keep input order
    order = order[torch.sort(key[order], stable=True).indices]  # group by cell, keeping that order
    first = torch.ones_like(order, dtype=torch.bool)
    first[1:] = key[order][1:] != key[order][:-1]
    win = order[first]
    w = (boxes[win, 2] - boxes[win, 0]).clamp(min=0)
    h = (boxes[win, 3] - boxes[win, 1]).clamp(min=0)
    xy = torch.stack([cx[win] * grid_size - col[win], cy[win] * grid_size - row[win]], dim=-1)
    return CellTargets(win, batch[win], row[win], col[win], xy, torch.stack([w, h], -1).sqrt(), boxes[win], labels[win])


def flatten_targets(
    targets: BatchTargets | list[dict[str, Tensor]], input_hw: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate ragged per-image targets (xyxy input pixels) into ``(boxes as fractions [M, 4],
    labels [M], batch index [M])``. A packed ``BatchTargets`` is already concatenated: three copies at most."""
    height, width = input_hw
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
    if isinstance(targets, BatchTargets):
        boxes = targets.boxes.to(device=device, dtype=torch.float32).reshape(-1, 4)
        labels = targets.labels.to(device=device, dtype=torch.int64).reshape(-1)
        return boxes / scale, labels, targets.image_index.to(device=device, dtype=torch.int64)
    boxes = [t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
    labels = [t["labels"].to(device=device, dtype=torch.int64).reshape(-1) for t in targets]
    batch = [torch.full((len(lab),), i, dtype=torch.int64, device=device) for i, lab in enumerate(labels)]
    if not boxes:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return torch.zeros(0, 4, device=device), empty, empty
    return torch.cat(boxes) / scale, torch.cat(labels), torch.cat(batch)


def box_counts(targets: BatchTargets | list[dict[str, Tensor]]) -> list[int]:
    """Boxes per image, from host-side sizes only (no device sync)."""
    if isinstance(targets, BatchTargets):
        return list(targets.counts)
    return [int(t["labels"].reshape(-1).shape[0]) for t in targets]


def paired_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of matching rows of two xyxy box tensors ``[..., 4]`` (torchvision's ``box_iou`` is all-pairs)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def encode_raw(
    targets: list[dict[str, Tensor]], input_hw: tuple[int, int], grid_size: int, num_boxes: int, num_classes: int
) -> Tensor:
    """The raw grid a perfect model would output for these targets: ``(N, S, S, B*5 + C)``.

    Every predictor of an object's cell gets the object's box; the first has confidence 1 (it is the
    responsible one: IoUs tie and the loss takes the first), the others and every other cell 0; the
    object's class gets probability 1. ``YoloV1Loss`` of this grid is 0 up to float rounding. Objects
    that lose their cell to a larger one (``assign_cells``) are absent. Logits are clamped to ±16, so
    decoded boxes match to ~1e-5 of the input.
    """
    boxes, labels, batch = flatten_targets(targets, input_hw, torch.device("cpu"))
    cells = assign_cells(boxes, labels, batch, grid_size)
    raw = torch.full((len(targets), grid_size, grid_size, num_boxes * 5 + num_classes), -_LOGIT_LIMIT)
    box_params = torch.cat([cells.xy, cells.sqrt_wh], dim=-1)
    logits = torch.logit(box_params.clamp(0, 1), eps=1e-7).clamp(-_LOGIT_LIMIT, _LOGIT_LIMIT)
    for b in range(num_boxes):
        raw[cells.batch, cells.row, cells.col, b * 5 : b * 5 + 4] = logits
    raw[cells.batch, cells.row, cells.col, 4] = _LOGIT_LIMIT
    raw[cells.batch, cells.row, cells.col, num_boxes * 5 + cells.label] = _LOGIT_LIMIT
    return raw
