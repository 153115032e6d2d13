"""Class lists as users write them, read the same way by every command and config.

A class list is a YAML list (``[raccoon, dog]``), a comma-separated string (``raccoon,dog``; one name
is a list of one, never its letters), a file (one name per line, or a YAML list / ``names:`` mapping
for ``.yaml`` files), ``"voc"`` for the 20 Pascal VOC classes, or ``None`` (infer from the files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import yaml

from gridyolo.errors import DatasetError
from gridyolo.inputs import require_regular_file

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def parse_class_list(value: Sequence[str] | str | None) -> list[str] | None:
    """The class names ``value`` stands for (see the module docstring); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "voc":
            return list(VOC_CLASSES)
        if os.path.isfile(text) or text.endswith((".txt", ".yaml", ".yml", ".names")):
            return _names_from_file(text)
        names = [name.strip() for name in text.split(",")]
    elif isinstance(value, Sequence):
        names = [name.strip() if isinstance(name, str) else name for name in value]
    else:
        raise DatasetError(f"class list {value!r:.60}: expected names, a comma-separated string or a file")
    return _checked(names, repr(value) if not isinstance(value, str) else value)


def _names_from_file(path: str) -> list[str]:
    require_regular_file(path, "class list file", DatasetError)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    if path.endswith((".yaml", ".yml")):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
        names = data.get("names") if isinstance(data, dict) else data
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list):
            raise DatasetError(f"{path}: expected a YAML list of class names (or 'names:')")
        names = [str(n).strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return _checked(names, path)


def _checked(names: list, source: str) -> list[str]:
    if not names or not all(isinstance(n, str) and n for n in names):
        raise DatasetError(f"class list {source}: every class needs a non-empty name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"class list {source}: {', '.join(repeated)} appear(s) more than once")
    return names
