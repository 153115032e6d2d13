"""A seeded synthetic detection dataset in COCO format (the demo's data: no download needed).

Shapes of several classes with random sizes, colours and partial overlaps on textured backgrounds.
Object centres fall in distinct cells of a ``grid_size`` grid, so a YOLOv1 grid can represent every
object (one object per cell is the design's known limit; real data does not promise this).
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import torch

from gridyolo.core.grid import cell_index

SHAPES = ("circle", "square", "triangle", "cross")


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour gradient + blurred noise + a few random lines: texture, not a flat colour."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / (width + height) + 0.5
    image = a[None, None] * t[..., None] + b[None, None] * (1 - t[..., None])
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)).astype(np.float32), (0, 0), 2.0)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 6)):
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p2 = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.line(image, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 3)))
    return image


def _draw(image: np.ndarray, shape: str, cx: float, cy: float, w: float, h: float, colour: tuple) -> list[float]:
    """Draw one filled shape; returns its tight xyxy box."""
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if shape == "circle":
        cv2.ellipse(image, (round(cx), round(cy)), (round(w / 2), round(h / 2)), 0, 0, 360, colour, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(image, (round(x1), round(y1)), (round(x2), round(y2)), colour, -1)
    elif shape == "triangle":
        points = np.array([[cx, y1], [x2, y2], [x1, y2]], dtype=np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    else:  # cross
        tw, th = max(w / 4, 2), max(h / 4, 2)
        cv2.rectangle(image, (round(cx - tw / 2), round(y1)), (round(cx + tw / 2), round(y2)), colour, -1)
        cv2.rectangle(image, (round(x1), round(cy - th / 2)), (round(x2), round(cy + th / 2)), colour, -1)
    return [x1, y1, x2, y2]


def make_image(
    rng: np.random.Generator, size: tuple[int, int], grid_size: int, max_objects: int, min_visible: float = 0.7
):
    """One image and its annotations ``[(class index, xyxy), ...]``.

    Shapes may overlap, but a placement that would leave an earlier shape less than ``min_visible`` of
    its area visible is rejected: a box around a mostly hidden shape is a label nobody could predict.
    """
    height, width = size
    image = _background(rng, height, width)
    owner = np.full((height, width), -1, dtype=np.int16)  # which object each pixel shows (-1: background)
    areas: list[int] = []
    taken: set[tuple[int, int]] = set()
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            side = rng.uniform(0.22, 0.45) * min(width, height)
            w, h = side * rng.uniform(0.75, 1.25), side * rng.uniform(0.75, 1.25)
            cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
            cell = tuple(cell_index(torch.tensor([cy / height, cx / width], dtype=torch.float64), grid_size).tolist())
            cls = int(rng.integers(len(SHAPES)))
            mask = np.zeros((height, width), dtype=np.uint8)
            _draw(mask, SHAPES[cls], cx, cy, w, h, (1,))
            covered = owner[mask > 0]
            hidden = np.bincount(covered[covered >= 0], minlength=len(areas))
            visible = [(owner == i).sum() - hidden[i] for i in range(len(areas))]
            if cell not in taken and all(v >= min_visible * a for v, a in zip(visible, areas)):
                break
        else:
            continue
        taken.add(cell)
        owner[mask > 0] = len(areas)
        areas.append(int(mask.sum()))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = _draw(image, SHAPES[cls], cx, cy, w, h, colour)
        objects.append((cls, box))
    return image, objects


def write_synthetic_coco(
    root: str,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    grid_size: int = 5,
    max_objects: int = 4,
    sizes: tuple[tuple[int, int], ...] = ((240, 240), (240, 280), (256, 256)),
) -> str:
    """Write ``root/annotations/instances_{split}.json`` and images in ``root/{split}/``.

    Args:
        splits: images per split (default ``{"train": 600, "val": 100}``).
        seed: the whole dataset is a function of it.
        sizes: image ``(height, width)`` choices (several, so letterboxing is exercised).
    """
    splits = splits or {"train": 600, "val": 100}
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    for split, count in splits.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            size = sizes[int(rng.integers(len(sizes)))]
            image, objects = make_image(rng, size, grid_size, max_objects)
            file_name = f"{split}_{image_id:05d}.jpg"
            cv2.imwrite(os.path.join(root, split, file_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])  # fmt: skip
            images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
            for cls, (x1, y1, x2, y2) in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                })  # fmt: skip
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w", encoding="utf-8") as f:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return root


def write_synthetic_video(path: str, frames: int = 48, size: tuple[int, int] = (256, 256), seed: int = 1) -> str:
    """A short video of shapes moving over a textured background (the demo's ``detect`` input)."""
    rng = np.random.default_rng(seed)
    height, width = size
    background = _background(rng, height, width)
    movers = []
    for _ in range(3):
        side = rng.uniform(0.25, 0.4) * min(size)
        start = rng.uniform([side, side], [width - side, height - side])
        velocity = rng.uniform(-1, 1, 2) * min(size) / frames
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        movers.append((SHAPES[int(rng.integers(len(SHAPES)))], side, start, velocity, colour))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (width, height))
    for t in range(frames):
        image = background.copy()
        for shape, side, start, velocity, colour in movers:
            cx, cy = np.clip(start + velocity * t, side / 2, [width - side / 2, height - side / 2])
            _draw(image, shape, cx, cy, side, side, colour)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
