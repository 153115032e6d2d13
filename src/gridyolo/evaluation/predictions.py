"""Detections from files other detectors write: a COCO results json, or a folder of YOLO txt predictions.

Both load into the library's form, ``{image_id: {"boxes" xyxy px, "scores", "labels"}}`` with the
*dataset's* contiguous labels, and a COCO results list with the dataset's own category ids:

- COCO results json: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``; category
  ids are those of the dataset evaluated against (the standard meaning of the format). An image is
  named by its integer ``image_id`` (the dataset's), or, so that no one has to guess ids, by its file:
  ``file_name`` (the image's file name, or its path relative to its folder) or a string ``image_id``
  holding its file name or stem (what Ultralytics writes for non-numeric stems).
- YOLO txt: one ``STEM.txt`` per image, a line ``cls cx cy w h conf`` per box (normalized to the image,
  what Ultralytics writes with ``save_txt`` + ``save_conf``); ``cls`` indexes the dataset's class list.

Image ids of each format: COCO json's own ``id``; VOC: the position of the image in the split file
(``ImageSets/Main/SPLIT.txt``, from 0; all ``Annotations/*.xml`` sorted by name without a split);
YOLO txt: the position in the split's sorted image list, from 0. On VOC / YOLO data the class order
(category id ``k + 1``, txt class ``k``) is the dataset's class list, which is printed with the
results; predictions whose boxes only ever land on objects of other classes are refused (a class
order that is not the dataset's would otherwise score 0).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.errors import GridyoloError
from gridyolo.input_guards import require_regular_file

Predictions = dict[int, dict[str, np.ndarray]]


def load_predictions(path: str, reader: DetectionReader) -> tuple[list[dict], Predictions, list[str]]:
    """``(coco_results, predictions, notes)`` from a results json file or a YOLO txt folder.

    ``notes`` are warnings worth printing (prediction files that match no image of the split).
    Any malformed entry is a ``GridyoloError`` naming the file and the entry or line.
    """
    if os.path.isdir(path):
        results, predictions, notes = _load_yolo_folder(path, reader)
    else:
        require_regular_file(path, "predictions file")
        results, predictions, notes = _load_coco_results(path, reader)
    if not _is_coco_json(reader):
        order = ", ".join(f"{k} {name}" for k, name in enumerate(reader.info.class_names[:20]))
        what = "category ids k + 1 and txt classes k" if not os.path.isdir(path) else "txt classes k"
        notes.append(f"{path}: read {what} as the dataset's class list: {order}"
                     f"{', ...' if reader.info.num_classes > 20 else ''} (--classes sets another order)")  # fmt: skip
    _check_classes_match(reader, predictions, path)
    return results, predictions, notes


def _is_coco_json(reader: DetectionReader) -> bool:
    from gridyolo.data.coco import CocoReader

    return isinstance(getattr(reader, "parent", reader), CocoReader)


def _check_classes_match(reader: DetectionReader, predictions: Predictions, path: str) -> None:
    """Refuse predictions whose boxes overlap (IoU >= 0.5) ground-truth objects only of other classes:
    a class order or category ids that are not the dataset's, which would score mAP 0 in silence."""
    same = other = 0
    for record in reader.records:
        det = predictions.get(record.image_id)
        if det is None or not len(det["labels"]) or not len(record.labels):
            continue
        overlap = _iou(det["boxes"], np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)) >= 0.5
        agree = det["labels"][:, None] == np.asarray(record.labels)[None, :]
        same += int((overlap & agree).sum())
        other += int((overlap & ~agree).sum())
    if same == 0 and other > 0:
        names = ", ".join(f"{k} {n}" for k, n in enumerate(reader.info.class_names[:8]))
        raise GridyoloError(
            f"{path}: no predicted box overlaps an object of its own class, while {other} overlap objects of other "
            f"classes: the predictions' classes are not in the dataset's order ({names}); pass --classes in "
            "the order of the predictions (VOC), or use the dataset's category ids"
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of xyxy boxes."""
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(inter / (area_a[:, None] + area_b[None, :] - inter))


class _ImageNames:
    """The images of a split by id, by file name (and path below its folder) and by stem, for results
    that name their images by file (``file_name``, or a string ``image_id``)."""

    def __init__(self, reader: DetectionReader) -> None:
        self.ids = {record.image_id for record in reader.records}
        self.by_name: dict[str, set[int]] = defaultdict(set)
        for record in reader.records:
            parts = record.file.replace(os.sep, "/").split("/")
            for depth in range(1, min(len(parts), 3) + 1):  # name, folder/name, folder/folder/name
                self.by_name["/".join(parts[-depth:])].add(record.image_id)
            self.by_name[os.path.splitext(parts[-1])[0]].add(record.image_id)
        # VOC / YOLO ids are positions; tools that number images by their numeric stems exist
        # (Ultralytics): an id that could be either must not be scored against the wrong image
        self.numeric_stem: dict[int, int] = {}
        self.stems = False
        if not _is_coco_json(reader):
            for record in reader.records:
                stem = os.path.splitext(os.path.basename(record.file))[0]
                if stem.isdigit():
                    self.numeric_stem[int(stem)] = record.image_id

    def choose_integer_scheme(self, data: list, path: str, reader: DetectionReader) -> str | None:
        """How this file's integer ``image_id`` values name images: ``ids`` (the dataset's ids) or
        ``stems`` (numeric file stems, as Ultralytics numbers images); a note when it is the stems.

        On VOC / YOLO data the ids are positions; when every integer id is both a valid position and a
        numeric stem, and the two name different images, the file is refused (ambiguous)."""
        used = {item["image_id"] for item in data if isinstance(item, dict) and type(item.get("image_id")) is int}
        as_ids = used <= self.ids
        as_stems = bool(self.numeric_stem) and used <= self.numeric_stem.keys()
        self.stems = as_stems and not as_ids
        if as_ids and as_stems and any(self.numeric_stem[i] != i for i in used):
            raise GridyoloError(f"{path}: its integer image ids are ambiguous in {reader.name}: each is both a "
                                "position in the split and the numeric stem of another image; name images by "
                                "file_name")  # fmt: skip
        return f"{path}: image ids read as the images' numeric file stems" if self.stems and used else None

    def resolve(self, item: dict, where: str, reader: DetectionReader) -> int:
        image_id = item.get("image_id", item.get("file_name"))
        if isinstance(image_id, str):
            name = image_id.replace("\\", "/")
            found = self.by_name.get(name[2:] if name.startswith("./") else name, set())
            if len(found) != 1:
                problem = "matches no image" if not found else f"matches {len(found)} images"
                raise GridyoloError(f"{where}: image {image_id!r:.60} {problem} of {reader.name} (by file name or "
                                    "stem)")  # fmt: skip
            return next(iter(found))
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise GridyoloError(f"{where}: image_id must be an integer (or a file name), got {image_id!r:.40}")
        if self.stems:
            return self.numeric_stem[image_id]
        if image_id not in self.ids:
            raise GridyoloError(f"{where}: image_id {image_id} is not an image of {reader.name} (its ids are "
                                f"{_id_scheme(reader)}; or name images by file_name)")  # fmt: skip
        return image_id


def _id_scheme(reader: DetectionReader) -> str:
    if _is_coco_json(reader):
        return "the annotation file's image ids"
    return f"positions 0..{len(reader.records) - 1} in the split, see the README"


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GridyoloError(f"{where}: {what} must be a finite number, got {value!r:.40}")
    return float(value)


def _load_coco_results(path: str, reader: DetectionReader) -> tuple[list[dict], Predictions, list[str]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise GridyoloError(f"{path}:{exc.lineno}: malformed JSON at column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise GridyoloError(f"{path}: not a COCO results json (not UTF-8 JSON text)") from None
    except RecursionError:  # valid JSON, nested deeper than Python's parser goes: no results list is
        raise GridyoloError(f"{path}: not a COCO results json (JSON nested too deeply)") from None
    if isinstance(data, dict) and "annotations" in data:
        raise GridyoloError(f"{path}: this is a ground-truth json; --predictions takes a results list")
    if not isinstance(data, list):
        raise GridyoloError(f"{path}: expected a COCO results list [{{image_id, category_id, bbox, score}}, ...]")
    label_of = {cid: label for label, cid in enumerate(reader.info.category_ids)}
    images = _ImageNames(reader)
    scheme_note = images.choose_integer_scheme(data, path, reader)
    rows: dict[int, list[tuple[list[float], float, int]]] = defaultdict(list)
    results = []
    for k, item in enumerate(data):
        where = f"{path}: result #{k}"
        if not isinstance(item, dict):
            raise GridyoloError(f"{where}: expected an object, got {type(item).__name__}")
        missing = [key for key in ("category_id", "bbox", "score") if key not in item]
        if "image_id" not in item and "file_name" not in item:
            missing.insert(0, "image_id (or file_name)")
        if missing:
            raise GridyoloError(f"{where}: missing {', '.join(missing)}")
        image_id, category_id = images.resolve(item, where, reader), item["category_id"]
        if isinstance(category_id, bool) or not isinstance(category_id, int) or category_id not in label_of:
            known = ", ".join(map(str, reader.info.category_ids[:12]))
            raise GridyoloError(
                f"{where}: category_id {category_id!r:.40} is not a category of {reader.name} (its ids: {known}"
                f"{', ...' if len(label_of) > 12 else ''}); results must use the evaluated dataset's ids"
            )
        bbox = item["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise GridyoloError(f"{where}: bbox must be [x, y, width, height], got {bbox!r:.60}")
        x, y, w, h = (_number(v, where, "each bbox value") for v in bbox)
        if w < 0 or h < 0:
            raise GridyoloError(f"{where}: bbox has a negative width or height {bbox!r:.60}")
        score = _number(item["score"], where, "score")
        results.append({"image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h], "score": score})
        rows[image_id].append(([x, y, x + w, y + h], score, label_of[category_id]))
    return results, _to_predictions(rows), [scheme_note] if scheme_note else []


def _load_yolo_folder(folder: str, reader: DetectionReader) -> tuple[list[dict], Predictions, list[str]]:
    by_stem: dict[str, list] = defaultdict(list)
    for record in reader.records:
        by_stem[os.path.splitext(os.path.basename(record.file))[0]].append(record)
    names = sorted(f for f in os.listdir(folder) if f.endswith(".txt"))
    files = [f for f in names if os.path.isfile(os.path.join(folder, f))]  # a named pipe would block the read
    if not files:
        raise GridyoloError(f"{folder}: no .txt prediction files (expected one 'cls cx cy w h conf' file per image)")
    num_classes = reader.info.num_classes
    rows: dict[int, list[tuple[list[float], float, int]]] = defaultdict(list)
    unmatched, matched = [], 0
    for name in files:
        stem, path = name[:-4], os.path.join(folder, name)
        records = by_stem.get(stem, [])
        if len(records) > 1:
            raise GridyoloError(f"{path}: {len(records)} images of {reader.name} are named '{stem}'; cannot tell which")
        if not records:
            unmatched.append(name)
            continue
        record = records[0]
        matched += 1
        rows.setdefault(record.image_id, [])
        for lineno, values in _read_lines(path):
            where = f"{path}:{lineno}"
            if len(values) == 5:
                raise GridyoloError(f"{where}: no confidence column; write predictions with their scores (save_conf)")
            if len(values) != 6:
                raise GridyoloError(f"{where}: expected 'cls cx cy w h conf', got {len(values)} values")
            cls, cx, cy, w, h, conf = values
            if cls != int(cls) or not 0 <= cls < num_classes:
                raise GridyoloError(f"{where}: class {cls:g} is outside the class list (0..{num_classes - 1})")
            if w < 0 or h < 0:
                raise GridyoloError(f"{where}: negative width or height")
            W, H = record.width, record.height
            box = [(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H]
            rows[record.image_id].append((box, conf, int(cls)))
    if not matched:
        raise GridyoloError(
            f"{folder}: none of its {len(files)} prediction files is named after an image of {reader.name}"
        )
    notes = []
    if len(files) < len(names):
        regular = set(files)
        odd = [f for f in names if f not in regular]
        notes.append(f"{folder}: {len(odd)} .txt entr{'y is' if len(odd) == 1 else 'ies are'} not a regular file "
                     f"(a folder, a named pipe or a device) and were skipped ({', '.join(odd[:3])})")  # fmt: skip
    if unmatched:
        notes.append(
            f"{folder}: {len(unmatched)} prediction file(s) match no image of {reader.name} and were ignored "
            f"({', '.join(unmatched[:3])}{', ...' if len(unmatched) > 3 else ''})"
        )
    predictions = _to_predictions(rows)
    ids = reader.info.category_ids
    results = [
        {"image_id": image_id, "category_id": int(ids[label]), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
        for image_id, det in predictions.items()
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist())
    ]
    return results, predictions, notes


def _read_lines(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise GridyoloError(f"{path}: not a UTF-8 text file") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise GridyoloError(f"{path}:{lineno}: expected numbers 'cls cx cy w h conf', got '{line[:80]}'") from None
        if not all(math.isfinite(v) for v in values):
            raise GridyoloError(f"{path}:{lineno}: non-finite value in '{line[:80]}'")
        yield lineno, values


def _to_predictions(rows: dict[int, list[tuple[list[float], float, int]]]) -> Predictions:
    predictions = {}
    for image_id, items in rows.items():
        predictions[image_id] = {
            "boxes": np.array([b for b, _, _ in items], dtype=np.float64).reshape(-1, 4),
            "scores": np.array([s for _, s, _ in items], dtype=np.float64),
            "labels": np.array([lab for _, _, lab in items], dtype=np.int64),
        }
    return predictions
