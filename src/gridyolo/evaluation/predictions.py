"""Detections from files other detectors write: a COCO results json, or a folder of YOLO txt predictions.

Both load into the library's form, ``{image_id: {"boxes" xyxy px, "scores", "labels"}}`` with the
*dataset's* contiguous labels, and a COCO results list with the dataset's own category ids:

- COCO results json: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``; ids are
  those of the dataset evaluated against (the standard meaning of the format).
- YOLO txt: one ``STEM.txt`` per image, a line ``cls cx cy w h conf`` per box (normalized to the image,
  what Ultralytics writes with ``save_txt`` + ``save_conf``); ``cls`` indexes the dataset's class list.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.errors import GridyoloError
from gridyolo.inputs import require_regular_file

Predictions = dict[int, dict[str, np.ndarray]]


def load_predictions(path: str, reader: DetectionReader) -> tuple[list[dict], Predictions, list[str]]:
    """``(coco_results, predictions, notes)`` from a results json file or a YOLO txt folder.

    ``notes`` are warnings worth printing (prediction files that match no image of the split).
    Any malformed entry is a ``GridyoloError`` naming the file and the entry or line.
    """
    if os.path.isdir(path):
        return _load_yolo_folder(path, reader)
    require_regular_file(path, "predictions file")
    return (*_load_coco_results(path, reader), [])


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GridyoloError(f"{where}: {what} must be a finite number, got {value!r:.40}")
    return float(value)


def _load_coco_results(path: str, reader: DetectionReader) -> tuple[list[dict], Predictions]:
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
    image_ids = {record.image_id for record in reader.records}
    rows: dict[int, list[tuple[list[float], float, int]]] = defaultdict(list)
    results = []
    for k, item in enumerate(data):
        where = f"{path}: result #{k}"
        if not isinstance(item, dict):
            raise GridyoloError(f"{where}: expected an object, got {type(item).__name__}")
        missing = [key for key in ("image_id", "category_id", "bbox", "score") if key not in item]
        if missing:
            raise GridyoloError(f"{where}: missing {', '.join(missing)}")
        image_id, category_id = item["image_id"], item["category_id"]
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise GridyoloError(f"{where}: image_id must be an integer, got {image_id!r:.40}")
        if image_id not in image_ids:
            raise GridyoloError(f"{where}: image_id {image_id} is not an image of {reader.name}")
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
    return results, _to_predictions(rows)


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
