"""One entry point from (root, format, split) to a reader."""

from __future__ import annotations

from collections.abc import Sequence

from gridyolo.data.base import DetectionReader, refuse_incomplete
from gridyolo.data.classes import parse_class_list
from gridyolo.data.coco import CocoReader
from gridyolo.data.voc import VocReader
from gridyolo.data.yolo_txt import YoloTxtReader
from gridyolo.errors import DatasetError

FORMATS = ("coco", "voc", "yolo")


def build_reader(
    root: str | Sequence[str],
    format: str,
    split: str | None = None,
    classes: Sequence[str] | str | None = "voc",
) -> DetectionReader:
    """Build the reader of a dataset.

    Args:
        root: COCO root, VOC root (or a list of VOC roots), or a YOLO data YAML / its folder.
        format: ``coco``, ``voc`` or ``yolo``.
        split: COCO ``instances_{split}.json``; VOC ``ImageSets/Main/{split}.txt`` (``None``: every xml);
            YOLO key in the YAML (``None``: ``train``).
        classes: VOC only: a list of names, a comma-separated string, a file, ``"voc"`` for the 20 VOC
            classes, ``None`` to infer them (``data.classes.parse_class_list``).
    """
    if format not in FORMATS:
        raise DatasetError(f"unknown dataset format '{format}' (choose one of: {', '.join(FORMATS)})")
    for one in [root] if isinstance(root, str) else root:
        refuse_incomplete(str(one))
    try:
        return _build(root, format, split, classes)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        # the readers check every structure they know of; whatever slips through is still the data's fault
        where = root if isinstance(root, str) else ", ".join(map(str, root))
        detail = f"{exc.__class__.__name__}: {str(exc)[:160]}"
        raise DatasetError(f"{where}: malformed {format} dataset ({detail})") from None


def _build(root: str | Sequence[str], format: str, split: str | None, classes) -> DetectionReader:
    if format == "coco":
        if not isinstance(root, str):
            raise DatasetError("COCO reads a single root")
        return CocoReader.from_root(root, split)
    if format == "voc":
        return VocReader(root, split, parse_class_list(classes))
    if not isinstance(root, str):
        raise DatasetError("YOLO txt reads a single data YAML")
    return YoloTxtReader(root, split or "train")
