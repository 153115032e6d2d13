"""YOLO txt reader: an Ultralytics-style data YAML with ``images/`` and ``labels/`` folders."""

from __future__ import annotations

import glob
import os

import numpy as np
import yaml

from gridyolo.data.base import DetectionReader, check_root_exists, format_hint
from gridyolo.data.classes import yaml_names
from gridyolo.data.images import IMAGE_SUFFIXES, read_image_size
from gridyolo.data.sample import DatasetInfo
from gridyolo.errors import DatasetError
from gridyolo.input_guards import require_regular_file


def find_data_yaml(root: str) -> str:
    """``root`` itself if it is a YAML file, else the single ``*.yaml`` inside the folder ``root``."""
    check_root_exists(root)
    if os.path.isfile(root):
        return root
    found = sorted(glob.glob(os.path.join(root, "*.yaml")) + glob.glob(os.path.join(root, "*.yml")))
    if len(found) != 1:
        what = "no data YAML" if not found else f"{len(found)} YAML files ({', '.join(map(os.path.basename, found))})"
        raise DatasetError(f"{root}: not a YOLO txt root: {what}; pass the data YAML itself{format_hint(root, 'yolo')}")
    return found[0]


def label_path(image_path: str) -> str:
    """Ultralytics' convention: the last ``/images/`` in the path becomes ``/labels/``, suffix ``.txt``."""
    head, sep, tail = image_path.rpartition(f"{os.sep}images{os.sep}")
    base = f"{head}{os.sep}labels{os.sep}{tail}" if sep else image_path
    return os.path.splitext(base)[0] + ".txt"


class YoloTxtReader(DetectionReader):
    """Reads one split of a YOLO txt dataset.

    The YAML has ``path`` (dataset root, relative to the YAML), ``train`` / ``val`` / ``test`` (a folder
    of images, a ``.txt`` list of image paths, or a list of those, relative to ``path``) and ``names``
    (a list or a ``{index: name}`` dict). Each image's ``labels/*.txt`` holds ``cls cx cy w h`` per line,
    normalized to the image size; a missing label file means an image with no objects.

    Args:
        data_yaml: the data YAML (or a folder holding exactly one).
        split: the key of the split in the YAML (``train``, ``val``, ``test``).
    """

    def __init__(self, data_yaml: str, split: str = "train") -> None:
        data_yaml = find_data_yaml(data_yaml)
        self.name = f"{data_yaml}:{split}"
        self.issues = []
        config = _load_yaml(data_yaml)
        names = yaml_names(config.get("names"), data_yaml)
        self.notes = []
        self.info = DatasetInfo(class_names=tuple(map(str, names)), category_ids=tuple(range(len(names))))
        base = os.path.join(os.path.dirname(os.path.abspath(data_yaml)), str(config.get("path", ".")))
        if split not in config or config[split] in (None, ""):
            splits = [k for k in ("train", "val", "test") if config.get(k)]
            raise DatasetError(f"{data_yaml}: no split '{split}' (splits: {', '.join(splits) or 'none'})")

        self.records = []
        for image_id, image in enumerate(_list_images(base, config[split], data_yaml)):
            width, height = read_image_size(image)
            txt = label_path(image)
            boxes, labels = read_labels(txt, width, height, len(names))
            self.records.append(
                self._make_record(
                    file=image,
                    image_id=image_id,
                    width=width,
                    height=height,
                    boxes=boxes,
                    labels=labels,
                    issue_file=txt,
                )
            )


def _load_yaml(path: str) -> dict:
    require_regular_file(path, "data YAML", DatasetError)
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise DatasetError(f"{path}: YAML nested too deeply to be a data YAML") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f":{line + 1}" if line is not None else ""
        raise DatasetError(f"{path}{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: expected a mapping with path/train/val/names")
    return config


def _list_images(base: str, entry: str | list, data_yaml: str) -> list[str]:
    images: list[str] = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = os.path.normpath(os.path.join(base, str(item)))
        if os.path.isdir(path):
            images += sorted(
                os.path.join(dirpath, f)
                for dirpath, _, files in os.walk(path)
                for f in files
                if f.lower().endswith(IMAGE_SUFFIXES)
            )
        elif os.path.isfile(path) and path.endswith(".txt"):
            try:
                with open(path, encoding="utf-8") as f:
                    images += [os.path.normpath(os.path.join(base, line.strip())) for line in f if line.strip()]
            except UnicodeDecodeError:
                raise DatasetError(f"{path}: not a UTF-8 text file") from None
        else:
            raise DatasetError(
                f"{data_yaml}: split entry '{item}' -> {path} is neither an image folder nor a .txt list"
            )
    return images


def read_labels(path: str, width: int, height: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's label file -> ``(boxes float64 [K, 4] xyxy image px, labels int64 [K])``.

    A missing file is an image without objects; a bad line or a class outside ``0..num_classes - 1``
    is a ``DatasetError`` naming the file and line. Non-finite values pass through (the reader drops
    and reports them).
    """
    rows = _read_label_file(path, num_classes)
    cxcywh = rows[:, 1:] * np.array([width, height, width, height], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    return boxes, rows[:, 0].astype(np.int64)


def _read_label_file(path: str, num_classes: int) -> np.ndarray:
    """``float64 [N, 5]`` rows ``cls cx cy w h``; a bad line raises naming the file and line."""
    if not os.path.lexists(path):
        return np.zeros((0, 5), dtype=np.float64)  # no label file: an image without objects
    require_regular_file(path, "label file", DatasetError)
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) != 5:
                    raise ValueError
                values = [float(v) for v in parts]
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: expected 'class cx cy w h', got '{line.strip()[:80]}'") from None
            cls = values[0]
            if cls != int(cls) or not 0 <= cls < num_classes:
                raise DatasetError(
                    f"{path}:{lineno}: class {parts[0]} is outside the class list (0..{num_classes - 1})"
                )
            rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(-1, 5)
