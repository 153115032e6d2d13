"""Geometry to the model input and box-aware training augmentation (albumentations).

Every image first goes through ``letterbox`` (or a plain ``stretch`` resize, as YOLOv1 did) to the
square model input; the returned ``scale_x, scale_y, pad_x, pad_y`` map input pixels back to the
original image exactly: ``x_orig = (x_input - pad_x) / scale_x``. The same function serves
training, evaluation and inference; training then augments at model resolution, which is cheaper
than augmenting the full-size image. Augmentation applies to training only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for updates on import
import albumentations as A  # noqa: E402
import cv2
import numpy as np
from jsonargparse.typing import ClosedUnitInterval, restricted_number_type

from gridyolo.errors import GridyoloError

RESIZE_MODES = ("letterbox", "stretch")
PAD_VALUE = 114


def letterbox_geometry(height: int, width: int, size: int, mode: str = "letterbox") -> tuple[int, int, int, int]:
    """``(new_width, new_height, pad_x, pad_y)`` of an image placed into a ``size x size`` input."""
    if mode == "stretch":
        return size, size, 0, 0
    if mode != "letterbox":
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got '{mode}'")
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def letterbox(
    image: np.ndarray, size: int, mode: str = "letterbox", fill: int = PAD_VALUE
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an HWC image into ``size x size`` keeping its aspect ratio (``letterbox``) or not.

    Returns:
        ``(image [size, size, C], params float32 [4])`` with ``params = (scale_x, scale_y, pad_x, pad_y)``:
        a point ``x`` of the original image lands at ``x * scale_x + pad_x`` (continuous pixel coords).
    """
    height, width = image.shape[:2]
    new_w, new_h, pad_x, pad_y = letterbox_geometry(height, width, size, mode)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if (new_w, new_h) != (size, size):
        image = cv2.copyMakeBorder(
            image, pad_y, size - new_h - pad_y, pad_x, size - new_w - pad_x, cv2.BORDER_CONSTANT, value=(fill,) * 3
        )
    params = np.array([new_w / width, new_h / height, pad_x, pad_y], dtype=np.float32)
    return image, params


def boxes_to_input(boxes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """xyxy boxes in original pixels -> model-input pixels, given letterbox ``params``."""
    scale = np.array([params[0], params[1], params[0], params[1]], dtype=np.float32)
    shift = np.array([params[2], params[3], params[2], params[3]], dtype=np.float32)
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale + shift).astype(np.float32)


def boxes_to_original(boxes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Inverse of ``boxes_to_input``."""
    scale = np.array([params[0], params[1], params[0], params[1]], dtype=np.float32)
    shift = np.array([params[2], params[3], params[2], params[3]], dtype=np.float32)
    return ((np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - shift) / scale).astype(np.float32)


HueFraction = restricted_number_type("HueFraction", float, [(">=", 0.0), ("<=", 0.5)])
ColourFactor = restricted_number_type("ColourFactor", float, (">=", 1.0))


@dataclass
class AugmentConfig:
    """Training augmentation strength (YOLOv1: scale and translation up to 20%, exposure and
    saturation up to a factor 1.5 in HSV).

    Attributes:
        scale: random scaling by a factor in ``[1 - scale, 1 + scale]``.
        translate: random translation up to this fraction of the input, each axis.
        hue: hue shift as a fraction of the colour circle.
        saturation, exposure: factors drawn in ``[1/f, f]``.
        flip: probability of a horizontal flip.
        mosaic: probability of a 2x2 mosaic with three other training images.
        min_visibility: a box keeping less than this fraction of its area after the transform is dropped.
    """

    scale: ClosedUnitInterval = 0.2
    translate: ClosedUnitInterval = 0.2
    hue: HueFraction = 0.015
    saturation: ColourFactor = 1.5
    exposure: ColourFactor = 1.5
    flip: ClosedUnitInterval = 0.5
    mosaic: ClosedUnitInterval = 0.0
    min_visibility: ClosedUnitInterval = 0.25

    def __post_init__(self) -> None:  # the types check configs; this checks direct Python use
        for name, (low, high) in {**dict.fromkeys(("scale", "translate", "flip", "mosaic", "min_visibility"),
                                                  (0.0, 1.0)), "hue": (0.0, 0.5), "saturation": (1.0, math.inf),
                                  "exposure": (1.0, math.inf)}.items():  # fmt: skip
            if not low <= getattr(self, name) <= high:
                raise GridyoloError(f"augment.{name} {getattr(self, name)}: must be in [{low}, {high}]")


class TrainTransform:
    """Letterbox, then (optional Mosaic) + random affine + colour jitter + flip, boxes following.

    Call with an original image, its xyxy pixel boxes and labels (and, for Mosaic, a list of other
    already-letterboxed items); returns the augmented ``size x size`` image and its boxes in input pixels.
    """

    def __init__(
        self,
        input_size: int,
        resize_mode: str = "letterbox",
        augment: AugmentConfig | None = None,
        seed: int | None = None,
    ) -> None:
        self.input_size = input_size
        self.resize_mode = resize_mode
        self.augment = augment or AugmentConfig()
        cfg = self.augment
        steps: list = []
        if cfg.mosaic > 0:
            steps.append(
                A.Mosaic(
                    target_size=(input_size, input_size),
                    cell_shape=(input_size, input_size),
                    fill=PAD_VALUE,
                    p=cfg.mosaic,
                )
            )
        steps += [
            A.Affine(
                scale=(1.0 - cfg.scale, 1.0 + cfg.scale),
                translate_percent=(-cfg.translate, cfg.translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                p=1.0,
            ),
            A.ColorJitter(
                brightness=(1.0 / cfg.exposure, cfg.exposure),
                contrast=(1.0, 1.0),
                saturation=(1.0 / cfg.saturation, cfg.saturation),
                hue=(-cfg.hue, cfg.hue),
                p=1.0,
            ),
            A.HorizontalFlip(p=cfg.flip),
        ]
        self.compose = A.Compose(
            steps,
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["labels"],
                min_visibility=cfg.min_visibility,
                min_width=1.0,
                min_height=1.0,
                clip=True,
                filter_invalid_bboxes=True,
            ),
            seed=seed,
        )

    def prepare(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> dict:
        """Letterbox one item into the ``dict(image, bboxes, labels)`` form albumentations takes."""
        image, params = letterbox(image, self.input_size, self.resize_mode)
        return {"image": image, "bboxes": boxes_to_input(boxes, params), "labels": np.asarray(labels, dtype=np.int64)}

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, mosaic_items: list[dict] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(image uint8 [S, S, 3], boxes float32 [K, 4] xyxy input px, labels int64 [K])``."""
        data = self.prepare(image, boxes, labels)
        if self.augment.mosaic > 0:
            data["mosaic_metadata"] = mosaic_items or []
        out = self.compose(**data)
        out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        return out["image"], out_boxes, np.asarray(out["labels"], dtype=np.int64).reshape(-1)

    def set_seed(self, seed: int) -> None:
        """Re-seed albumentations' own generator (it ignores numpy/torch global seeds)."""
        self.compose.set_random_seed(seed)


class EvalTransform:
    """Deterministic letterbox / stretch only; keeps the params that map boxes back exactly."""

    def __init__(self, input_size: int, resize_mode: str = "letterbox") -> None:
        self.input_size = input_size
        self.resize_mode = resize_mode

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(image [S, S, 3], boxes [K, 4] input px, labels [K], params [4])``."""
        out, params = letterbox(image, self.input_size, self.resize_mode)
        return out, boxes_to_input(boxes, params), np.asarray(labels, dtype=np.int64), params
