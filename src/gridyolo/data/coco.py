"""COCO json reader: ``annotations/instances_SPLIT.json`` + images in ``SPLIT/`` (or explicit paths)."""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from gridyolo.data.base import DetectionReader, check_root_exists, format_hint
from gridyolo.data.sample import DatasetInfo, ImageRecord
from gridyolo.errors import DatasetError
from gridyolo.input_guards import repeated, require_regular_file


def records_to_coco(
    records: Sequence[ImageRecord],
    category_ids: Sequence[int],
    class_names: Sequence[str],
    image_ids: Sequence[int] | None = None,
    file_names: Sequence[str] | None = None,
) -> dict:
    """COCO ``images`` / ``annotations`` / ``categories`` of these records (what ``data convert`` writes and
    what evaluation scores a non-COCO dataset against).

    ``bbox`` is xywh in pixels, ``area`` the box area, ``category_id`` ``category_ids[label]``; VOC's
    difficult objects are ``iscrowd=1`` with ``difficult=1`` (pycocotools ignores them as crowd regions,
    ``evaluation.coco_metrics.evaluate_coco`` matches them by IoU as the VOC devkit does); crowd objects
    ``iscrowd=1``. Annotation ids count from 1. ``image_ids`` / ``file_names``: the records' own by default.
    """
    image_ids = [r.image_id for r in records] if image_ids is None else image_ids
    file_names = [r.file for r in records] if file_names is None else file_names
    images, annotations = [], []
    for record, image_id, name in zip(records, image_ids, file_names):
        images.append({"id": int(image_id), "file_name": name, "width": record.width, "height": record.height})
        rows = [(b, lab, bool(d), False) for b, lab, d in zip(record.boxes, record.labels, record.difficult)]
        rows += [(b, lab, False, True) for b, lab in zip(record.crowd_boxes, record.crowd_labels)]
        for box, label, difficult, crowd in rows:
            x1, y1, x2, y2 = (float(v) for v in box)
            annotation = {
                "id": len(annotations) + 1,
                "image_id": int(image_id),
                "category_id": int(category_ids[int(label)]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(difficult or crowd),
            }
            if difficult:
                annotation["difficult"] = 1
            annotations.append(annotation)
    categories = [{"id": int(i), "name": n} for i, n in zip(category_ids, class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def load_json(path: str) -> dict:
    """Parse a json file; a syntax error names the file, line and column."""
    require_regular_file(path, "annotation file", DatasetError)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply to be a COCO annotation file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: malformed JSON at column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations', 'categories'")
    return data


class CocoReader(DetectionReader):
    """Reads a COCO detection json.

    Sparse category ids (COCO's 1..90) map to contiguous labels in the order of ``categories`` sorted
    by id; ``info.category_ids`` maps back. ``iscrowd`` annotations go to ``crowd_boxes`` (evaluation
    only, never training targets). Images without annotations are kept as negatives.

    Args:
        annotation_file: the ``instances_*.json`` file.
        image_dir: folder holding the ``file_name`` of every image.
    """

    def __init__(self, annotation_file: str, image_dir: str) -> None:
        self.name = os.path.basename(annotation_file)
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        self.issues = []
        self.notes = []
        data = load_json(annotation_file)
        for key in ("images", "categories"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{annotation_file}: missing the '{key}' list (not a COCO detection json?)")
        categories = _categories(data["categories"], annotation_file)
        self.info = DatasetInfo(
            class_names=tuple(name for _, name in categories), category_ids=tuple(cid for cid, _ in categories)
        )
        label_of = {cid: i for i, cid in enumerate(self.info.category_ids)}
        images = _images(data["images"], annotation_file)
        annotations = data.get("annotations", [])
        if not isinstance(annotations, list):
            raise DatasetError(f"{annotation_file}: 'annotations' must be a list")

        per_image: dict[int, list[dict]] = defaultdict(list)
        for k, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                raise DatasetError(f"{annotation_file}: annotation #{k} is not an object")
            where = f"{annotation_file}: annotation id {ann.get('id')!r:.40}"
            image_id, category_id = ann.get("image_id"), ann.get("category_id")
            if not _is_integer(image_id) or int(image_id) not in images:
                raise DatasetError(f"{where}: image_id {image_id!r:.40} is not in 'images'")
            if not _is_integer(category_id) or int(category_id) not in label_of:
                raise DatasetError(f"{where}: category_id {category_id!r:.40} is not in 'categories'")
            image_id = int(image_id)
            bbox = ann.get("bbox")
            if not (
                isinstance(bbox, list)
                and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
            ):
                raise DatasetError(f"{where}: bbox {bbox!r:.60} is not [x, y, width, height]")
            per_image[image_id].append(ann)

        self.records = []
        for image_id, (file_name, width, height) in images.items():
            anns = per_image.get(image_id, [])
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, dropped and reported below
                xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
                boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # xywh -> xyxy
            # gridyolo writes VOC's difficult objects as iscrowd=1 + difficult=1 (ignored by other tools)
            difficult = np.array([bool(a.get("difficult", 0)) for a in anns], dtype=bool)
            crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool) & ~difficult
            self.records.append(
                self._make_record(
                    file=os.path.join(image_dir, file_name),
                    image_id=image_id,
                    width=width,
                    height=height,
                    boxes=boxes,
                    labels=np.array([label_of[int(a["category_id"])] for a in anns], dtype=np.int64),
                    difficult=difficult,
                    crowd=crowd,
                    issue_file=os.path.join(image_dir, file_name),
                )
            )

    @classmethod
    def from_root(cls, root: str, split: str | None = None) -> CocoReader:
        """``root/annotations/instances_{split}.json`` with images in ``root/{split}/``.

        With no split, the root must hold exactly one ``instances_*.json``.
        """
        check_root_exists(root)
        ann_dir = os.path.join(root, "annotations")
        if not os.path.isdir(ann_dir):
            raise DatasetError(f"{root}: not a COCO root (no annotations/ folder){format_hint(root, 'coco')}")
        available = sorted(
            os.path.basename(p)[len("instances_") : -len(".json")]
            for p in glob.glob(os.path.join(ann_dir, "instances_*.json"))
        )
        if split is None:
            if len(available) != 1:
                raise DatasetError(
                    f"{ann_dir}: choose a split with --split, one of: {', '.join(available) or 'none found'}"
                )
            split = available[0]
        if split not in available:
            raise DatasetError(f"{ann_dir}: no instances_{split}.json (splits found: {', '.join(available) or 'none'})")
        image_dir = os.path.join(root, split)
        if not os.path.isdir(image_dir):
            raise DatasetError(f"{image_dir}: image folder of split '{split}' not found")
        return cls(os.path.join(ann_dir, f"instances_{split}.json"), image_dir)


def _categories(categories: list, path: str) -> list[tuple[int, str]]:
    """``[(id, name)]`` sorted by id; ids and names must each be unique."""
    out = []
    for k, cat in enumerate(categories):
        cid, name = cat.get("id") if isinstance(cat, dict) else None, cat.get("name") if isinstance(cat, dict) else None
        if not _is_integer(cid) or not isinstance(name, str) or not name:
            raise DatasetError(f"{path}: category #{k} {cat!r:.80} needs an integer 'id' and a non-empty 'name'")
        out.append((int(cid), name))
    for what, values in (("id", [c for c, _ in out]), ("name", [n for _, n in out])):
        twice = repeated(values)
        if twice:
            raise DatasetError(f"{path}: category {what} {', '.join(twice)} appears more than once")
    return sorted(out)


def _images(images: list, path: str) -> dict[int, tuple[str, int, int]]:
    """``{image_id: (file_name, width, height)}`` in file order; ids unique, sizes positive."""
    out: dict[int, tuple[str, int, int]] = {}
    for k, img in enumerate(images):
        try:
            image_id, file_name, width, height = img["id"], img["file_name"], img["width"], img["height"]
        except (KeyError, TypeError):
            raise DatasetError(f"{path}: image #{k} {img!r:.100} lacks id/file_name/width/height") from None
        if not all(_is_integer(v) for v in (image_id, width, height)):
            raise DatasetError(f"{path}: image #{k} {img!r:.100}: id, width and height must be integers")
        image_id, width, height = int(image_id), int(width), int(height)
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{path}: image id {image_id}: file_name must be a non-empty string")
        if width <= 0 or height <= 0:
            raise DatasetError(f"{path}: image id {image_id} ({file_name}) has size {width}x{height}")
        if image_id in out:
            raise DatasetError(
                f"{path}: image id {image_id} is used twice ({out[image_id][0]} and {file_name}); ids must be unique"
            )
        out[image_id] = (file_name, width, height)
    return out


def _is_integer(value) -> bool:
    """An int, or a float with an integral value (some converters write ``640.0``); never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
