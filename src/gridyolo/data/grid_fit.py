"""Which grid fits a dataset: object sizes, the share of objects that own a cell (YOLOv1 keeps one
object per cell), feature-map sizes, and a recommended grid size S and input size for a backbone.

A grid S fits an input size when the backbone's feature map (``input / stride``) is S or a multiple
of it: the head then pools whole blocks (ONNX export needs it; smaller maps are up-sampled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from gridyolo.core.grid import assign_cells
from gridyolo.core.letterbox import boxes_to_input, letterbox_params
from gridyolo.data.sample import ImageRecord

GRID_SIZES = (4, 5, 7, 8, 10, 13, 14, 16, 20, 26)
OWN_CELL_TARGET = 0.97  # share of objects that must own a cell for a grid to be recommended
CPU_INPUT_RANGE = (256, 512)  # input sizes that train in minutes on a small CPU
# the small objects of every class (10th percentile of the shorter side) should span this many feature-map
# cells: bccd's Platelets at 1.0 cell (320 px) test mAP 0.549, at 1.3 cells (416 px) 0.576 (two seeds each)
SMALL_OBJECT_CELLS = 1.3
MIN_CLASS_OBJECTS = 10  # a class with fewer boxes has no meaningful 10th percentile


def input_fractions(records: Sequence[ImageRecord], resize_mode: str = "letterbox", size: int = 640) -> tuple:
    """``(boxes [M, 4] xyxy fractions of the model input, image index [M])`` after letterbox/stretch."""
    boxes, index = [], []
    for i, record in enumerate(records):
        if not len(record.boxes):
            continue
        params = letterbox_params(record.height, record.width, size, resize_mode)
        boxes.append(boxes_to_input(record.boxes, params) / size)
        index.append(np.full(len(record.boxes), i))
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    return np.concatenate(boxes), np.concatenate(index)


def owning_share(boxes: np.ndarray, index: np.ndarray, grid_size: int) -> float:
    """Share of objects that own their cell at grid ``grid_size`` (``grid.assign_cells``, as the loss)."""
    if not len(boxes):
        return 1.0
    cells = assign_cells(torch.from_numpy(boxes).float(), torch.zeros(len(boxes), dtype=torch.int64),
                         torch.from_numpy(index).long(), grid_size)  # fmt: skip
    return len(cells.index) / len(boxes)


def fitting_input_sizes(grid_size: int, stride: int, limit: int = 1024) -> list[int]:
    """Input sizes whose feature map is a whole multiple of the grid: ``k * S * stride``."""
    step = grid_size * stride
    return list(range(step, limit + 1, step))


def grid_report(
    records: Sequence[ImageRecord], stride: int, resize_mode: str = "letterbox", grid_sizes: Sequence[int] = GRID_SIZES,
    class_names: Sequence[str] | None = None,
) -> dict:  # fmt: skip
    """Object sizes, per-grid cell ownership and fitting input sizes, and a recommendation.

    Keys: ``object_size`` (quantiles of √(box area / input area) and of the shorter box side as a
    fraction of the input; ``smallest_class``: the class whose 10th-percentile shorter side is the
    smallest, among classes with ``MIN_CLASS_OBJECTS`` boxes or more), ``candidates`` (``grid_size``,
    ``owning_cell``, ``input_sizes`` whose feature map fits), ``recommended`` (``grid_size``,
    ``input_size``, ``feature_map``, ``why``, ``coarse_grid_size`` / ``coarse_why``: the alternative for
    YOLOv1's loss).
    """
    boxes, index = input_fractions(records, resize_mode)
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1) if len(boxes) else np.zeros((0, 2))
    quantiles = (0.1, 0.5, 0.9)
    object_size = {
        "relative_size": {f"p{int(q * 100)}": round(float(np.quantile(np.sqrt(sides.prod(1)), q)), 4)
                          for q in quantiles} if len(boxes) else {},
        "shorter_side": {f"p{int(q * 100)}": round(float(np.quantile(sides.min(1), q)), 4)
                         for q in quantiles} if len(boxes) else {},
        "smallest_class": _smallest_class(records, sides.min(1), class_names),
    }  # fmt: skip
    candidates = [
        {"grid_size": s, "owning_cell": round(owning_share(boxes, index, s), 4),
         "input_sizes": fitting_input_sizes(s, stride)}
        for s in grid_sizes
    ]  # fmt: skip
    recommended = _recommend(candidates, object_size, stride, lambda s: owning_share(boxes, index, s))
    return {"stride": stride, "objects": int(len(boxes)), "object_size": object_size, "candidates": candidates,
            "recommended": recommended}  # fmt: skip


def _smallest_class(records: Sequence[ImageRecord], shorter: np.ndarray, class_names: Sequence[str] | None) -> dict:
    """``{"class", "p10"}`` of the class whose small objects are the smallest ({} when no class has
    ``MIN_CLASS_OBJECTS`` boxes): a rare small class is invisible in the 10th percentile of all objects
    (bccd's Platelets are 7% of its boxes)."""
    labels = [r.labels for r in records if len(r.boxes)]  # the order of input_fractions' boxes
    labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    p10 = {int(c): float(np.quantile(shorter[labels == c], 0.1)) for c in np.unique(labels)
           if (labels == c).sum() >= MIN_CLASS_OBJECTS}  # fmt: skip
    if not p10:
        return {}
    c = min(p10, key=p10.get)
    name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
    return {"class": name, "p10": round(p10[c], 4)}


# what the recommended grid is trained with (configs/custom_cpu.yaml's defaults): the measured rule
FINE_GRID_OPTIONS = ("--model.ignore_iou 0.5 --model.assign all_predictors --model.box_loss sse+ciou "
                     "--model.conf_loss bce --model.class_loss ce")


def _recommend(candidates: list[dict], object_size: dict, stride: int, share_at: Callable[[int], float]) -> dict:
    """The grid of the feature map itself (one cell per position) at the smallest input in the CPU range
    whose small objects (10th percentile of the shorter side, of all objects and of the smallest class)
    span ``SMALL_OBJECT_CELLS`` feature-map cells, trained with
    ``FINE_GRID_OPTIONS``: the best grid measured on every data set tried (synthetic shapes, bccd, a
    large-object coco128 subset; BENCHMARKS.md "Which grid"). Beside it, the smallest grid where
    ``OWN_CELL_TARGET`` of the objects own a cell (``coarse_grid_size``): the choice for YOLOv1's loss,
    which pushes the boxes of the cells around an object to confidence 0 and so loses at fine grids."""
    smallest = object_size.get("smallest_class", {})
    small, which = min((object_size.get("shorter_side", {}).get("p10", 1.0), "10th percentile"),
                       (smallest.get("p10", 1.0), f"10th percentile of {smallest.get('class')}"))  # fmt: skip
    sizes = list(range(CPU_INPUT_RANGE[0], CPU_INPUT_RANGE[1] + 1, stride)) or [CPU_INPUT_RANGE[0]]
    sharp = [n for n in sizes if small * n >= SMALL_OBJECT_CELLS * stride]
    size = sharp[0] if sharp else sizes[-1]
    fine = size // stride
    good = [c for c in candidates if c["owning_cell"] >= OWN_CELL_TARGET and c["input_sizes"]]
    coarse = good[0] if good else max(candidates, key=lambda c: c["owning_cell"])
    owning = share_at(fine)
    why = (f"one cell per feature-map position, trained with {FINE_GRID_OPTIONS} (configs/custom_cpu.yaml's "
           f"defaults): the best grid measured on every data set tried; small objects ({which}) span "
           f"{small * size:.0f} px at {size} px, {small * size / stride:.2f} cells of stride {stride} "
           f"(wanted: {SMALL_OBJECT_CELLS})"
           + f"; {owning:.1%} of objects own a cell")  # fmt: skip
    coarse_why = (f"{coarse['owning_cell']:.1%} of objects own a cell at S={coarse['grid_size']}"
                  + ("" if good else f" (no grid reaches {OWN_CELL_TARGET:.0%})")
                  + "; with YOLOv1's loss (sse / sse / sse, assign responsible), which loses at fine grids")
    return {"grid_size": fine, "input_size": size, "feature_map": fine, "why": why,
            "coarse_grid_size": coarse["grid_size"] if coarse["grid_size"] < fine else None,
            "coarse_why": coarse_why}  # fmt: skip


def grid_warnings(records: Sequence[ImageRecord], grid_size: int, input_size: int, stride: int,
                  resize_mode: str = "letterbox", max_lost: float = 0.03) -> list[str]:  # fmt: skip
    """What training says at start when the grid does not fit the data or the backbone."""
    notes = []
    features = input_size // stride
    if features % grid_size:
        fits = ", ".join(map(str, fitting_input_sizes(grid_size, stride, max(2 * input_size, 1024))[:4]))
        notes.append(f"the {features}x{features} feature map does not divide into the {grid_size}x{grid_size} grid "
                     f"(ONNX export will fail); input sizes that fit: {fits}")  # fmt: skip
    boxes, index = input_fractions(records, resize_mode)
    lost = 1.0 - owning_share(boxes, index, grid_size)
    if lost > max_lost:
        notes.append(f"{lost:.1%} of the training objects share a cell with a larger one at S={grid_size} and are "
                     "never targets; gridyolo data check recommends a grid")  # fmt: skip
    return notes
