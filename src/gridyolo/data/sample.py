"""The contract between dataset readers and everything downstream.

Every reader (COCO json, Pascal VOC, YOLO txt) produces the same things:

- ``ImageRecord``: one image's annotations, parsed and validated, without the pixels.
- ``Sample``: an ``ImageRecord`` plus its decoded image.
- ``DatasetInfo``: class names and the mapping from contiguous labels back to the dataset's own ids.

Conventions (docs/ARCHITECTURE.md): images are RGB ``uint8`` HWC numpy arrays; boxes are ``xyxy`` in absolute
pixels of the original image, ``float32`` of shape ``[N, 4]``; labels are contiguous ``int64`` in
``0..C-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DatasetInfo:
    """Class names and the dataset's own category ids, indexed by contiguous label.

    ``category_ids[label]`` is the id the dataset uses for that class: COCO's sparse ids (1..90),
    ``label + 1`` for Pascal VOC (which has no ids of its own), the class index for YOLO txt.
    Both lists travel inside checkpoints and exported models.
    """

    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ValueError("class_names and category_ids must have the same length")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {"class_names": list(self.class_names), "category_ids": list(self.category_ids)}


@dataclass
class ImageRecord:
    """Validated annotations of one image (no pixels).

    Attributes:
        file: path of the image file.
        image_id: integer id (the dataset's own for COCO, a running index for VOC / YOLO txt).
        width, height: size of the original image in pixels.
        boxes: ``float32 [N, 4]`` xyxy pixels, clipped to the image, zero-area boxes removed.
        labels: ``int64 [N]`` contiguous labels.
        difficult: ``bool [N]``; VOC's difficult flag (all False elsewhere). Kept for evaluation.
        crowd_boxes: ``float32 [M, 4]`` xyxy pixels of COCO ``iscrowd`` regions, evaluation only.
        crowd_labels: ``int64 [M]``.
    """

    file: str
    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray | None = None
    crowd_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))
    crowd_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.difficult is None:
            self.difficult = np.zeros(self.labels.shape[0], dtype=bool)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if not (self.boxes.shape[0] == self.labels.shape[0] == self.difficult.shape[0]):
            raise ValueError(f"{self.file}: boxes, labels and difficult differ in length")
        self.crowd_boxes = np.asarray(self.crowd_boxes, dtype=np.float32).reshape(-1, 4)
        self.crowd_labels = np.asarray(self.crowd_labels, dtype=np.int64).reshape(-1)


@dataclass
class Sample:
    """One image with its annotations, ready for the transforms.

    ``image`` is RGB ``uint8`` ``[H, W, 3]``; ``boxes`` / ``labels`` as in ``ImageRecord``.
    """

    image: np.ndarray
    record: ImageRecord

    @property
    def boxes(self) -> np.ndarray:
        return self.record.boxes

    @property
    def labels(self) -> np.ndarray:
        return self.record.labels

    @property
    def image_id(self) -> int:
        return self.record.image_id

    @property
    def orig_size(self) -> tuple[int, int]:
        """``(height, width)`` of the original image."""
        return self.record.height, self.record.width


@dataclass(frozen=True)
class BoxIssue:
    """A box that validation changed: ``action`` is ``"clipped"`` or ``"dropped"``."""

    file: str
    action: str
    reason: str
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason, "box": [round(v, 2) for v in self.box]}
