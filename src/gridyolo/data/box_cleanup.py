"""Box validation shared by all readers: clip to the image, drop what has no area left."""

from __future__ import annotations

import numpy as np

from gridyolo.data.sample import BoxIssue

ROUNDING_PX = 1e-3


def clip_and_filter_boxes(
    boxes: np.ndarray, width: int, height: int, file: str
) -> tuple[np.ndarray, np.ndarray, list[BoxIssue]]:
    """Clip xyxy pixel boxes to ``[0, width] x [0, height]`` and drop empty ones.

    Args:
        boxes: ``float [N, 4]`` xyxy pixels, as annotated.
        width, height: image size in pixels.
        file: annotation file, for the issue records.

    Returns:
        ``(clipped [K, 4] float32, keep [N] bool, issues)`` where ``issues`` lists every box that was
        clipped (still kept) or dropped (zero / negative area after clipping, or not finite). An
        overshoot of at most ``ROUNDING_PX`` is float rounding of a normalized format (YOLO txt): it is
        clipped without an issue.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    issues: list[BoxIssue] = []
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    clipped = safe.copy()
    clipped[:, 0::2] = np.clip(safe[:, 0::2], 0.0, float(width))
    clipped[:, 1::2] = np.clip(safe[:, 1::2], 0.0, float(height))
    area_ok = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    keep = finite & area_ok
    changed = (np.abs(clipped - safe) > ROUNDING_PX).any(axis=1)
    for i in np.flatnonzero(~keep | changed):
        box = tuple(float(v) for v in boxes[i])
        if not finite[i]:
            issues.append(BoxIssue(file, "dropped", f"box {_fmt(box)} has non-finite coordinates", box))
        elif not area_ok[i]:
            where = "after clipping to the image" if changed[i] else ""
            issues.append(BoxIssue(file, "dropped", f"box {_fmt(box)} has zero or negative area {where}".strip(), box))
        else:
            issues.append(BoxIssue(file, "clipped", f"box {_fmt(box)} extends outside the {width}x{height} image", box))
    return clipped[keep], keep, issues


def _fmt(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
