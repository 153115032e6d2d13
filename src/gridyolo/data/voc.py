"""Pascal VOC reader: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/SPLIT.txt``."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

from gridyolo.data.base import DetectionReader, check_root_exists, format_hint
from gridyolo.data.classes import VOC_CLASSES, parse_class_list
from gridyolo.data.images import IMAGE_SUFFIXES, read_image_size
from gridyolo.data.sample import DatasetInfo
from gridyolo.errors import DatasetError
from gridyolo.input_guards import repeated, require_regular_file


class VocReader(DetectionReader):
    """Reads one or several Pascal VOC roots (VOC07+12 is ``roots=[voc2007, voc2012]``).

    VOC ``bndbox`` values are used as xyxy pixels unchanged (as torchvision's and MMDetection's VOC
    loaders do): an annotation with ``xmin == xmax`` is an annotation error with zero area and is
    dropped, not a one-pixel object.
    The ``difficult`` flag is kept (for evaluation); difficult objects are still training targets.

    Args:
        roots: one root or a list of roots, each holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``.
        split: name of ``ImageSets/Main/{split}.txt``; ``None`` reads every xml in ``Annotations/``.
        classes: class list (default: the 20 VOC classes); ``None`` infers it from the files (sorted).
    """

    def __init__(
        self, roots: str | Sequence[str], split: str | None = "trainval", classes: Sequence[str] | None = VOC_CLASSES
    ) -> None:
        roots = [roots] if isinstance(roots, str) else list(roots)
        if isinstance(classes, str):  # "raccoon" is one class, never the letters r, a, c, ...
            classes = parse_class_list(classes)
        self.name = ",".join(roots) + (f":{split}" if split else "")
        self.issues = []
        entries = [(root, xml) for root in roots for xml in self._xml_files(root, split)]
        parsed = [(root, xml, *_parse_xml(xml)) for root, xml in entries]
        if classes is None:
            classes = sorted({obj[0] for *_, objects in parsed for obj in objects})
        classes = list(classes)
        twice = repeated(classes)
        if twice:
            raise DatasetError(
                f"{self.name}: class name(s) {', '.join(twice)} appear more than once in the class list"
            )
        self.notes = []
        self.info = DatasetInfo(class_names=tuple(classes), category_ids=tuple(range(1, len(classes) + 1)))
        label_of = {name: i for i, name in enumerate(classes)}

        self.records = []
        odd_suffix, listings = [], {}
        for image_id, (root, xml, size, objects) in enumerate(parsed):
            file = _image_path(root, xml, listings)
            if os.path.splitext(file)[1] not in IMAGE_SUFFIXES:
                odd_suffix.append(file)
            width, height = size if size else read_image_size(file)
            for name, *_ in objects:
                if name not in label_of:
                    raise DatasetError(f"{xml}: object '{name}' is not in the class list ({', '.join(classes)})")
            boxes = np.array([obj[1] for obj in objects], dtype=np.float32).reshape(-1, 4)
            self.records.append(
                self._make_record(
                    file=file,
                    image_id=image_id,
                    width=width,
                    height=height,
                    boxes=boxes,
                    labels=np.array([label_of[obj[0]] for obj in objects], dtype=np.int64),
                    difficult=np.array([obj[2] for obj in objects], dtype=bool),
                    issue_file=xml,
                )
            )

        if odd_suffix:
            self.notes.append(
                f"{len(odd_suffix)} image(s) have an upper- or mixed-case extension and were read as they are "
                f"(first: {odd_suffix[0]})"
            )

    @staticmethod
    def _xml_files(root: str, split: str | None) -> list[str]:
        check_root_exists(root)
        ann_dir = os.path.join(root, "Annotations")
        if not os.path.isdir(ann_dir) or not os.path.isdir(os.path.join(root, "JPEGImages")):
            raise DatasetError(
                f"{root}: not a Pascal VOC root (needs Annotations/ and JPEGImages/){format_hint(root, 'voc')}"
            )
        if split is None:
            return sorted(os.path.join(ann_dir, f) for f in os.listdir(ann_dir) if f.endswith(".xml"))
        split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(split_file):
            main = os.path.join(root, "ImageSets", "Main")
            found = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt")) if os.path.isdir(main) else []
            raise DatasetError(f"{split_file}: split '{split}' not found (splits: {', '.join(found) or 'none'})")
        require_regular_file(split_file, "split file", DatasetError)
        try:
            with open(split_file, encoding="utf-8") as f:
                ids = [line.split()[0] for line in f if line.strip()]
        except UnicodeDecodeError:
            raise DatasetError(f"{split_file}: not a UTF-8 text file") from None
        files = [os.path.join(ann_dir, f"{i}.xml") for i in ids]
        for i, path in enumerate(files, start=1):
            if not os.path.isfile(path):
                raise DatasetError(f"{split_file}:{i}: annotation {path} not found")
        return files


def _parse_xml(path: str) -> tuple[tuple[int, int] | None, list[tuple[str, list[float], bool]]]:
    """``((width, height) or None, [(name, [xmin, ymin, xmax, ymax], difficult), ...])``."""
    require_regular_file(path, "annotation file", DatasetError)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path}:{exc.position[0]}: malformed XML: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read annotation ({exc.strerror})") from None
    size = None
    try:
        width, height = int(float(root.findtext("size/width", ""))), int(float(root.findtext("size/height", "")))
        if width > 0 and height > 0:
            size = (width, height)
    except (ValueError, OverflowError):
        pass  # missing or broken <size> (empty, text, inf): read it from the image header instead
    objects = []
    for k, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"{path}: object #{k} has no <name>")
        try:
            box = [float(obj.findtext(f"bndbox/{tag}", "")) for tag in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise DatasetError(f"{path}: object #{k} ('{name}') has a missing or non-numeric <bndbox>") from None
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
        objects.append((name, box, difficult))
    return size, objects


def _image_path(root: str, xml: str, listings: dict) -> str:
    """``JPEGImages/{id}.jpg`` as in VOC (other image suffixes, in any case, accepted); the xml's
    ``<filename>`` is not trusted, since tools that copy annotations often leave it stale."""
    stem = os.path.splitext(os.path.basename(xml))[0]
    candidates = [os.path.join(root, "JPEGImages", stem + suffix) for suffix in IMAGE_SUFFIXES]
    found = next((path for path in candidates if os.path.isfile(path)), None)
    if found is None:  # JPEGImages/x.JPG: one listing of the folder, then a case-insensitive match
        for name in _listing(os.path.join(root, "JPEGImages"), listings).get(stem, []):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                return os.path.join(root, "JPEGImages", name)
    return found or candidates[0]


def _listing(folder: str, cache: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """``{stem: [file names]}`` of a folder, listed once per reader (VOC roots hold thousands of images)."""
    if folder not in cache:
        cache[folder] = {}
        for name in sorted(os.listdir(folder)):
            cache[folder].setdefault(os.path.splitext(name)[0], []).append(name)
    return cache[folder]
