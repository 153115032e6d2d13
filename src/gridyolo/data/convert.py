"""``gridyolo data convert``: write any dataset the readers read as COCO json, Pascal VOC or YOLO txt.

The writers take validated ``ImageRecord``s (boxes already clipped, empty ones dropped: the same
report as ``data check``) and write the layout each reader reads back:

- ``coco``: ``OUT/annotations/instances_SPLIT.json``, images in ``OUT/SPLIT/``. Category ids are the
  source's own for a COCO source, ``1..C`` otherwise; image ids likewise (``1..N`` otherwise). Crowd
  regions stay ``iscrowd=1``; VOC difficult objects become ``iscrowd=1`` with ``difficult=1`` (other
  tools ignore them, gridyolo reads them back as difficult).
- ``voc``: ``OUT/Annotations/STEM.xml``, ``OUT/JPEGImages/``, ``OUT/ImageSets/Main/SPLIT.txt``; box
  corners as the shortest decimal that reads back to the same float32. VOC has no crowd: crowd regions
  are left out and reported.
- ``yolo``: ``OUT/images/SPLIT/``, ``OUT/labels/SPLIT/STEM.txt`` (``cls cx cy w h``, normalized) and
  ``OUT/data.yaml`` (no ``path`` key: the YAML's folder is the root, for gridyolo and Ultralytics
  alike). YOLO txt has neither crowd nor difficult: both are left out (as Ultralytics' VOC converter
  does with difficult objects) and reported.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence

import numpy as np
import yaml

from gridyolo.data.base import INCOMPLETE_MARKER, DetectionReader
from gridyolo.data.coco import CocoReader, records_to_coco
from gridyolo.data.sample import ImageRecord
from gridyolo.errors import DatasetError, GridyoloError
from gridyolo.files import require_empty_folder, write_text

TARGETS = ("coco", "voc", "yolo")
IMAGE_MODES = ("copy", "symlink", "hardlink")


def convert_dataset(
    reader: DetectionReader,
    to: str,
    out: str,
    split: str,
    images: str = "copy",
    exist_ok: bool = False,
    source_roots: Sequence[str] = (),
) -> dict:
    """Write ``reader``'s split into ``out`` in the ``to`` layout; returns what was written and lost.

    Args:
        to: ``coco``, ``voc`` or ``yolo``.
        out: output root; must be empty or new unless ``exist_ok`` (then same-named files are replaced,
            which is how several splits go into one root).
        split: the split's name in the output (``instances_SPLIT.json``, ``SPLIT.txt``, the YAML key).
        images: ``copy``, ``symlink`` (absolute links) or ``hardlink`` the image files.
        source_roots: the roots (or data YAML) the reader was built from: ``out`` must not be inside them.

    Everything is checked before the first file is written; until the last one is, ``out`` holds
    ``INCOMPLETE_MARKER`` and every reader refuses it.
    """
    if to not in TARGETS:
        raise GridyoloError(f"--to must be one of {', '.join(TARGETS)}, got '{to}'")
    if images not in IMAGE_MODES:
        raise GridyoloError(f"--images must be one of {', '.join(IMAGE_MODES)}, got '{images}'")
    if not split or os.sep in split or split in (".", ".."):
        raise GridyoloError(f"split name '{split}' must be a plain name")
    require_empty_folder(out, "--out", exist_ok)
    _refuse_an_output_inside_the_source(reader, out, source_roots)
    names = _unique_names(reader.records)
    if to == "yolo":  # refused before the first file is written, not after
        _check_data_yaml(os.path.join(out, "data.yaml"), list(reader.info.class_names))
    if to == "coco":
        _check_coco_categories(out, split, list(reader.info.class_names))
    writer = {"coco": _write_coco, "voc": _write_voc, "yolo": _write_yolo}[to]
    os.makedirs(out, exist_ok=True)
    marker = os.path.join(out, INCOMPLETE_MARKER)
    # until the last file is written, every reader refuses this root (a Ctrl-C, SIGTERM or full disk
    # leaves it marked: never read as a clean, smaller dataset)
    write_text(marker, f"gridyolo data convert of {reader.name} (split '{split}') did not finish\n")
    lost = writer(reader, out, split, names, images)
    os.remove(marker)
    return {
        "to": to,
        "out": out,
        "split": split,
        "images": len(reader.records),
        "boxes": int(sum(len(r.labels) for r in reader.records)),
        "lost": lost,
        "clipped": [issue.to_dict() for issue in reader.clipped],
        "dropped": [issue.to_dict() for issue in reader.dropped],
    }


def _refuse_an_output_inside_the_source(reader: DetectionReader, out: str, source_roots: Sequence[str]) -> None:
    """An output under a folder the source reads from (its roots, its image folders) would be read back
    as part of the source."""
    resolvers = (os.path.abspath, os.path.realpath)
    targets = {resolve(out) for resolve in resolvers}
    folders = {os.path.dirname(r.file) for r in reader.records}
    folders |= {root if os.path.isdir(root) else os.path.dirname(root) or "." for root in source_roots}
    for folder in sorted({resolve(folder) for folder in folders for resolve in resolvers}):
        if any(target == folder or target.startswith(folder + os.sep) for target in targets):
            raise GridyoloError(f"{out}: inside the source dataset ({folder}); its files would be read back as "
                                "part of the source. Choose an --out outside it")  # fmt: skip


def _check_data_yaml(path: str, class_names: list[str]) -> None:
    """An existing ``data.yaml`` (``--exist-ok``) must be readable and list the same classes."""
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise GridyoloError(f"{path}: exists and is not a readable YAML file; write to another --out") from None
    if not isinstance(config, dict):
        raise GridyoloError(f"{path}: exists and is not a YOLO data YAML; write to another --out")
    old = config.get("names")
    old = [old[k] for k in sorted(old)] if isinstance(old, dict) else old
    if old is not None and list(old) != class_names:
        raise GridyoloError(f"{path}: its class names differ from this dataset's; write to another --out")


def _check_coco_categories(out: str, split: str, class_names: list[str]) -> None:
    """Other splits already in the root (``--exist-ok``) must name the same categories."""
    folder = os.path.join(out, "annotations")
    if not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not (name.startswith("instances_") and name.endswith(".json")) or name == f"instances_{split}.json":
            continue
        try:
            with open(path, encoding="utf-8") as f:
                categories = json.load(f).get("categories")
            names = [c["name"] for c in categories]
        except (OSError, ValueError, RecursionError, AttributeError, TypeError, KeyError):
            raise GridyoloError(f"{path}: not a readable COCO json; write to another --out") from None
        if names != class_names:
            raise GridyoloError(f"{path}: its categories differ from this dataset's; write to another --out")


def _unique_names(records: list[ImageRecord]) -> list[str]:
    """The output file name of every image: its base name, which must be unique in the split."""
    names = [os.path.basename(r.file) for r in records]
    stems = Counter(os.path.splitext(n)[0] for n in names)
    repeated = [s for s, n in stems.items() if n > 1]
    if repeated:
        raise DatasetError(
            f"{len(repeated)} image name(s) occur more than once in the split (e.g. '{repeated[0]}'), "
            "but the output keeps one flat folder per split; rename them first"
        )
    return names


def _place_image(src: str, dest: str, mode: str) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        if os.path.exists(dest) and os.path.samefile(src, dest):
            return
        os.remove(dest)
    if mode == "symlink":
        os.symlink(os.path.abspath(src), dest)
    elif mode == "hardlink":
        os.link(src, dest)
    else:
        shutil.copyfile(src, dest)


def _lost(crowd: int, difficult: int, fmt: str) -> list[str]:
    out = []
    if crowd:
        out.append(f"{crowd} crowd region(s) (iscrowd) not written: {fmt} has no crowd annotations")
    if difficult:
        out.append(f"{difficult} difficult object(s) not written: {fmt} has no difficult flag")
    return out


def _write_coco(reader: DetectionReader, out: str, split: str, names: list[str], mode: str) -> list[str]:
    keep_ids = isinstance(reader, CocoReader)
    category_ids = list(reader.info.category_ids) if keep_ids else list(range(1, reader.info.num_classes + 1))
    image_ids = [record.image_id if keep_ids else record.image_id + 1 for record in reader.records]
    for record, name in zip(reader.records, names):
        _place_image(record.file, os.path.join(out, split, name), mode)
    data = {
        "info": {"description": f"converted by gridyolo from {reader.name}"},
        **records_to_coco(reader.records, category_ids, reader.info.class_names, image_ids, names),
    }
    write_text(os.path.join(out, "annotations", f"instances_{split}.json"), json.dumps(data))
    return []


def _float32_text(value: float) -> str:
    """Shortest decimal that reads back as the same float32 (``12``, ``12.5``, ``12.345678``)."""
    return np.format_float_positional(np.float32(value), trim="-")


def _write_voc(reader: DetectionReader, out: str, split: str, names: list[str], mode: str) -> list[str]:
    stems, crowd = [], 0
    for record, name in zip(reader.records, names):
        stem = os.path.splitext(name)[0]
        stems.append(stem)
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = name
        size = ET.SubElement(root, "size")
        for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        ET.SubElement(root, "segmented").text = "0"
        for box, label, difficult in zip(record.boxes, record.labels, record.difficult):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = reader.info.class_names[int(label)]
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = str(int(difficult))
            bndbox = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bndbox, tag).text = _float32_text(value)
        crowd += len(record.crowd_labels)
        ET.indent(root)
        write_text(os.path.join(out, "Annotations", f"{stem}.xml"), ET.tostring(root, encoding="unicode") + "\n")
        _place_image(record.file, os.path.join(out, "JPEGImages", name), mode)
    write_text(os.path.join(out, "ImageSets", "Main", f"{split}.txt"), "".join(f"{s}\n" for s in stems))
    return _lost(crowd, 0, "Pascal VOC")


def _write_yolo(reader: DetectionReader, out: str, split: str, names: list[str], mode: str) -> list[str]:
    crowd = difficult = 0
    for record, name in zip(reader.records, names):
        keep = ~record.difficult
        boxes = record.boxes[keep].astype(np.float64)
        size = np.array([record.width, record.height, record.width, record.height], dtype=np.float64)
        centre, wh = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
        rows = np.concatenate([centre, wh], axis=1) / size
        lines = [f"{int(label)} " + " ".join(f"{v:.10g}" for v in row) for label, row in zip(record.labels[keep], rows)]
        crowd += len(record.crowd_labels)
        difficult += int((~keep).sum())
        stem = os.path.splitext(name)[0]
        write_text(os.path.join(out, "labels", split, f"{stem}.txt"), "".join(f"{line}\n" for line in lines))
        _place_image(record.file, os.path.join(out, "images", split, name), mode)
    _update_data_yaml(os.path.join(out, "data.yaml"), split, list(reader.info.class_names))
    return _lost(crowd, difficult, "YOLO txt")


def _update_data_yaml(path: str, split: str, class_names: list[str]) -> None:
    """Add ``split`` to ``data.yaml`` (``convert_dataset`` checked it with ``_check_data_yaml`` before
    the first file was written)."""
    config: dict = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    config[split] = f"images/{split}"
    config["names"] = dict(enumerate(class_names))
    write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def format_convert_report(report: dict) -> str:
    lines = [
        f"wrote {report['images']} images, {report['boxes']} boxes as {report['to']} "
        f"(split '{report['split']}') to {report['out']}"
    ]
    for key in ("clipped", "dropped"):
        lines.append(f"{key} boxes (as in data check): {len(report[key])}")
        lines += [f"  {item['file']}: {item['reason']}" for item in report[key]]
    lines += [f"not representable: {item}" for item in report["lost"]]
    return "\n".join(lines)
