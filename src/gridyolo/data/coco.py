"""COCO json reader: ``annotations/instances_SPLIT.json`` + images in ``SPLIT/`` (or explicit paths)."""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict

import numpy as np

from gridyolo.data.base import DetectionReader, check_root_exists, format_hint
from gridyolo.data.sample import DatasetInfo
from gridyolo.errors import DatasetError


def load_json(path: str) -> dict:
    """Parse a json file; a syntax error names the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
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
        data = load_json(annotation_file)
        for key in ("images", "categories"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{annotation_file}: missing the '{key}' list (not a COCO detection json?)")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.info = DatasetInfo(
            class_names=tuple(str(c["name"]) for c in categories),
            category_ids=tuple(int(c["id"]) for c in categories),
        )
        label_of = {cid: i for i, cid in enumerate(self.info.category_ids)}

        per_image: dict[int, list[dict]] = defaultdict(list)
        image_ids = {img.get("id") for img in data["images"]}
        for ann in data.get("annotations", []):
            where = f"{annotation_file}: annotation id {ann.get('id')}"
            if ann.get("image_id") not in image_ids:
                raise DatasetError(f"{where}: image_id {ann.get('image_id')} is not in 'images'")
            if ann.get("category_id") not in label_of:
                raise DatasetError(f"{where}: category_id {ann.get('category_id')} is not in 'categories'")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise DatasetError(f"{where}: bbox {bbox!r} is not [x, y, width, height]")
            per_image[ann["image_id"]].append(ann)

        self.records = []
        for img in data["images"]:
            try:
                image_id, file_name = int(img["id"]), str(img["file_name"])
                width, height = int(img["width"]), int(img["height"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(
                    f"{annotation_file}: image entry {img!r:.120} lacks id/file_name/width/height"
                ) from None
            anns = per_image.get(image_id, [])
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # xywh -> xyxy
            self.records.append(
                self._make_record(
                    file=os.path.join(image_dir, file_name),
                    image_id=image_id,
                    width=width,
                    height=height,
                    boxes=boxes,
                    labels=np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64),
                    crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
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
