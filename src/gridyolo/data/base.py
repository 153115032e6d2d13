"""What every dataset reader shares: validated records in memory, pixels loaded on demand."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from gridyolo.data.box_cleanup import clip_and_filter_boxes
from gridyolo.data.images import load_image
from gridyolo.data.sample import BoxIssue, DatasetInfo, ImageRecord, Sample
from gridyolo.errors import DatasetError

# written first and removed last by ``data convert``: a root holding it was left half-written
INCOMPLETE_MARKER = ".gridyolo-incomplete"


def refuse_incomplete(root: str) -> None:
    """A dataset root (or a YOLO data YAML's folder) that an interrupted ``data convert`` left is refused."""
    folder = root if os.path.isdir(root) else os.path.dirname(root) or "."
    if os.path.exists(os.path.join(folder, INCOMPLETE_MARKER)):
        raise DatasetError(f"{folder}: an interrupted 'gridyolo data convert' left this folder incomplete "
                           f"({INCOMPLETE_MARKER}); convert again (with --exist-ok) to finish it")  # fmt: skip


class DetectionReader(Sequence):
    """A list of validated ``ImageRecord`` whose items load as ``Sample``.

    Subclasses parse their format in ``__init__`` and fill ``records``, ``info``, ``issues`` (every
    clipped or dropped box) and ``notes`` (findings that changed nothing, e.g. upper-case image
    extensions). Reading an item decodes the image; nothing else touches disk.
    """

    info: DatasetInfo
    records: list[ImageRecord]
    issues: list[BoxIssue]
    notes: list[str]
    name: str = "dataset"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        record = self.records[index]
        image = load_image(record.file)
        height, width = image.shape[:2]
        if (width, height) != (record.width, record.height):
            raise DatasetError(
                f"{record.file}: image is {width}x{height} but its annotation says {record.width}x{record.height}"
            )
        return Sample(image=image, record=record)

    @property
    def dropped(self) -> list[BoxIssue]:
        return [issue for issue in self.issues if issue.action == "dropped"]

    @property
    def clipped(self) -> list[BoxIssue]:
        return [issue for issue in self.issues if issue.action == "clipped"]

    def _make_record(
        self,
        *,
        file: str,
        image_id: int,
        width: int,
        height: int,
        boxes: np.ndarray,
        labels: np.ndarray,
        difficult: np.ndarray | None = None,
        crowd: np.ndarray | None = None,
        issue_file: str | None = None,
    ) -> ImageRecord:
        """Validate raw xyxy pixel boxes (clip, drop empty, log issues) into an ``ImageRecord``."""
        if not os.path.isfile(file):
            raise DatasetError(f"{file}: image file not found (referenced by {issue_file or 'the annotations'})")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        n = labels.shape[0]
        difficult = np.zeros(n, dtype=bool) if difficult is None else np.asarray(difficult, dtype=bool)
        crowd = np.zeros(n, dtype=bool) if crowd is None else np.asarray(crowd, dtype=bool)
        clipped, keep, issues = clip_and_filter_boxes(boxes, width, height, issue_file or file)
        self.issues.extend(issues)
        labels, difficult, crowd = labels[keep], difficult[keep], crowd[keep]
        return ImageRecord(
            file=file,
            image_id=image_id,
            width=width,
            height=height,
            boxes=clipped[~crowd],
            labels=labels[~crowd],
            difficult=difficult[~crowd],
            crowd_boxes=clipped[crowd],
            crowd_labels=labels[crowd],
        )


def require_dir(path: str, what: str, hint: str = "") -> None:
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: {what} not found{hint}")


def guess_format(root: str) -> str | None:
    """Best guess of a dataset root's format from its layout (for error hints only)."""
    if os.path.isfile(root) and root.endswith((".yaml", ".yml")):
        return "yolo"
    if not os.path.isdir(root):
        return None
    entries = set(os.listdir(root))
    if "Annotations" in entries and "JPEGImages" in entries:
        return "voc"
    ann = os.path.join(root, "annotations")
    if os.path.isdir(ann) and any(f.startswith("instances_") and f.endswith(".json") for f in os.listdir(ann)):
        return "coco"
    if any(e.endswith((".yaml", ".yml")) for e in entries) or {"images", "labels"} <= entries:
        return "yolo"
    return None


def format_hint(root: str, expected: str) -> str:
    guessed = guess_format(root)
    if guessed and guessed != expected:
        return f" (it looks like a {guessed.upper()} dataset: try --format {guessed})"
    return ""


def check_root_exists(root: str) -> None:
    if not os.path.exists(root):
        raise DatasetError(f"{root}: dataset root does not exist")
