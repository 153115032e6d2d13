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
from gridyolo.input_guards import repeated, require_regular_file

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
    return _checked(names, _shown(value))


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
        names = yaml_names(data.get("names") if isinstance(data, dict) else data, path)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return _checked(names, path)


def _shown(value) -> str:
    """A value as one printable line (a name with a newline in it must not break the error line)."""
    return value if isinstance(value, str) and value.isprintable() else f"{value!r:.80}"


def _checked(names: list, source: str) -> list[str]:
    if not names or not all(isinstance(n, str) and n for n in names):
        raise DatasetError(f"class list {source}: every class needs a non-empty name")
    repeated_names = repeated(names)
    if repeated_names:
        shown = ", ".join(_shown(n) for n in repeated_names[:10])
        raise DatasetError(f"class list {source}: {shown} appear(s) more than once")
    return names


def yaml_names(names: object, data_yaml: str) -> list[str]:
    """``names`` as a list indexed by class: a list, or an ``{index: name}`` mapping of 0..N-1 (no gaps:
    a missing index would silently shift every later class). Names must be unique."""
    if isinstance(names, dict):
        keys = list(names)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
            raise DatasetError(f"{data_yaml}: 'names' keys must be class indices 0..N-1, got {keys[:5]!r:.80}")
        missing = sorted(set(range(len(keys))) - set(keys))
        if missing:
            raise DatasetError(
                f"{data_yaml}: 'names' has no class {missing[0]} (indices must run 0..{len(keys) - 1} without gaps)"
            )
        names = [names[k] for k in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{data_yaml}: 'names' must be a list or an {{index: name}} mapping of class names")
    if not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) and str(n).strip() for n in names):
        raise DatasetError(f"{data_yaml}: every entry of 'names' must be a non-empty name")
    names = [str(n) for n in names]
    repeated_names = repeated(names)
    if repeated_names:
        raise DatasetError(f"{data_yaml}: class name(s) {', '.join(repeated_names)} appear more than once in 'names'")
    return names
