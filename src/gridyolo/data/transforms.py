"""Box-aware training augmentation (albumentations).

Every image is first letterboxed to the model input (``core.letterbox``); training then augments at
model resolution, which is cheaper than augmenting the full-size image. Augmentation applies to
training only; evaluation uses ``core.letterbox.EvalTransform``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import ModuleType

import cv2
import numpy as np
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, restricted_number_type

from gridyolo.core.letterbox import PAD_VALUE, boxes_to_input, letterbox
from gridyolo.errors import GridyoloError

HueFraction = restricted_number_type("HueFraction", float, [(">=", 0.0), ("<=", 0.5)])
ColourFactor = restricted_number_type("ColourFactor", float, (">=", 1.0))


def _albumentations() -> ModuleType:
    """albumentations, imported when a transform is first built: its import asks PyPI for a newer version
    (a network call with a 2 s timeout) unless ``NO_ALBUMENTATIONS_UPDATE`` is set, so it is set first
    (``setdefault``: a value the user chose stays)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


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
        flip_vertical: probability of a vertical flip (0 unless up and down mean nothing in the images:
            microscopy, aerial views).
        mosaic: probability of a 2x2 mosaic with three other training images.
        close_mosaic: Mosaic is off for this many final epochs (Ultralytics' ``close_mosaic``), so the
            model ends on whole images at their own scale, as it will see them.
        min_visibility: a box keeping less than this fraction of its area after the transform is dropped.
    """

    scale: ClosedUnitInterval = 0.2
    translate: ClosedUnitInterval = 0.2
    hue: HueFraction = 0.015
    saturation: ColourFactor = 1.5
    exposure: ColourFactor = 1.5
    flip: ClosedUnitInterval = 0.5
    flip_vertical: ClosedUnitInterval = 0.0
    mosaic: ClosedUnitInterval = 0.0
    close_mosaic: NonNegativeInt = 0
    min_visibility: ClosedUnitInterval = 0.25

    def __post_init__(self) -> None:  # the types check configs; this checks direct Python use
        probabilities = ("scale", "translate", "flip", "flip_vertical", "mosaic", "min_visibility")
        ranges = {**dict.fromkeys(probabilities, (0.0, 1.0)), "hue": (0.0, 0.5),
                  "saturation": (1.0, math.inf), "exposure": (1.0, math.inf)}  # fmt: skip
        for name, (low, high) in ranges.items():
            if not low <= getattr(self, name) <= high:
                raise GridyoloError(f"augment.{name} {getattr(self, name)}: must be in [{low}, {high}]")
        if isinstance(self.close_mosaic, bool) or not isinstance(self.close_mosaic, int) or self.close_mosaic < 0:
            raise GridyoloError(f"augment.close_mosaic {self.close_mosaic!r}: must be a whole number of epochs >= 0")


class TrainTransform:
    """Letterbox, then (optional Mosaic) + random affine + colour jitter + flips, boxes following.

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
        A = _albumentations()  # noqa: N806 -- albumentations' usual name
        steps: list = []
        self._mosaic = None
        if cfg.mosaic > 0:
            self._mosaic = A.Mosaic(
                target_size=(input_size, input_size), cell_shape=(input_size, input_size), fill=PAD_VALUE, p=cfg.mosaic
            )
            steps.append(self._mosaic)
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
        if cfg.flip_vertical > 0:  # only when asked: every other config keeps its exact random stream
            steps.append(A.VerticalFlip(p=cfg.flip_vertical))
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
        """Returns ``(image uint8 [S, S, 3], boxes float32 [K, 4] xyxy input px, labels int64 [K])``.

        Mosaic (when configured) applies only to a call given ``mosaic_items``: without them (the epochs
        after ``close_mosaic``, a one-image dataset, a call whose draw ``mosaic_will_apply`` said fails) the
        sample is the image alone."""
        data = self.prepare(image, boxes, labels)
        if self._mosaic is not None:
            # items: Mosaic draws (and applies on success); ``[]`` while ``mosaic_will_apply()`` is False: the
            # draw still happens and fails, so the stream is the one of a call given items (the dataset reads
            # none then); ``None`` or ``[]`` otherwise: no draw, no Mosaic
            drawn = mosaic_items is not None and (len(mosaic_items) > 0 or not self.mosaic_will_apply())
            self._mosaic.p = self.augment.mosaic if drawn else 0.0
            data["mosaic_metadata"] = mosaic_items or []
        out = self.compose(**data)
        out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        return out["image"], out_boxes, np.asarray(out["labels"], dtype=np.int64).reshape(-1)

    def mosaic_will_apply(self) -> bool:
        """Whether the next call given Mosaic items will use them. albumentations' Mosaic decides with one
        draw of its own Python generator (``random() < p``); that draw is made here on its state, which is
        then put back, so the call draws the same number."""
        if self._mosaic is None or self.augment.mosaic <= 0:
            return False
        if self.augment.mosaic >= 1:
            return True
        generator = self._mosaic.py_random
        state = generator.getstate()
        try:
            return generator.random() < self.augment.mosaic
        finally:
            generator.setstate(state)

    def set_seed(self, seed: int) -> None:
        """Re-seed albumentations' own generator (it ignores numpy/torch global seeds)."""
        self.compose.set_random_seed(seed)
