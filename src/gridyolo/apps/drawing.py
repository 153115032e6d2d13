"""Draw detections on images (OpenCV): one colour per class, label and score above each box."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-spread RGB colour per class (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    thickness: int | None = None,
) -> np.ndarray:
    """Return a copy of an RGB ``uint8`` image with xyxy pixel ``boxes`` drawn and labelled."""
    out = np.ascontiguousarray(image).copy()
    thickness = thickness or max(1, round(min(out.shape[:2]) / 300))
    scale = max(0.35, min(out.shape[:2]) / 900)
    for box, score, label in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores), np.asarray(labels)):
        colour = class_colour(int(label))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        name = class_names[int(label)] if int(label) < len(class_names) else str(int(label))
        text = f"{name} {float(score):.2g}"  # two significant digits: 0.014 stays visible
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(out, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
