"""Shared fixtures: the real data in ../shared/data (tests skip with a reason when it is absent)."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import lightning  # noqa: F401
import pytest
from hypothesis import settings

# Every property test draws the same examples on every run (the suite cannot flake; a test's own
# @settings changes only what it names). GRIDYOLO_HYPOTHESIS_EXAMPLES=N explores with fresh randomness,
# by hand: a failure found that way becomes an @example.
settings.register_profile("suite", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, database=None, deadline=None)
settings.load_profile("explore" if os.environ.get("GRIDYOLO_HYPOTHESIS_EXAMPLES") else "suite")

# Lightning gives its logger a StreamHandler bound to sys.stderr when first imported; imported here, at
# collection, that is the real stderr, not a test's capture that is closed by the next test (whose
# "Seed set to 0" would then fail with "I/O operation on closed file", depending on test order).

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COCO128 = DATA / "coco128"
BCCD = DATA / "bccd"
VIDEO = DATA / "video" / "vtest.avi"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data beside the project root)")
    return path


@pytest.fixture(scope="session")
def coco128_root() -> Path:
    return _require(COCO128)


@pytest.fixture(scope="session")
def bccd_root() -> Path:
    return _require(BCCD)


@pytest.fixture(scope="session")
def coco128_reader(coco128_root):
    from gridyolo.data import build_reader

    return build_reader(str(coco128_root), "coco", "train2017")


@pytest.fixture(scope="session")
def bccd_reader(bccd_root):
    from gridyolo.data import build_reader

    return build_reader(str(bccd_root), "voc", "trainval", classes=None)


def write_yolo_copy(coco_root: Path, dest: Path, limit: int | None = None) -> Path:
    """A YOLO-txt copy of a COCO dataset (images symlinked, labels normalized cx cy w h, crowd left out).

    Returns the data YAML path.
    """
    data = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    cats = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(cats)}
    images = sorted(data["images"], key=lambda i: i["file_name"])[:limit]
    (dest / "images" / "train").mkdir(parents=True)
    (dest / "labels" / "train").mkdir(parents=True)
    for img in images:
        src = coco_root / "train2017" / img["file_name"]
        os.symlink(src, dest / "images" / "train" / img["file_name"])
        lines = []
        for ann in data["annotations"]:
            if ann["image_id"] == img["id"] and not ann["iscrowd"]:
                x, y, w, h = ann["bbox"]
                W, H = img["width"], img["height"]
                cx, cy = (x + w / 2) / W, (y + h / 2) / H
                lines.append(f"{label_of[ann['category_id']]} {cx:.9f} {cy:.9f} {w / W:.9f} {h / H:.9f}")
        if lines:
            (dest / "labels" / "train" / (Path(img["file_name"]).stem + ".txt")).write_text("\n".join(lines) + "\n")
    yaml_path = dest / "data.yaml"
    names = "\n".join(f"  {i}: {c['name']}" for i, c in enumerate(cats))
    yaml_path.write_text(f"path: .\ntrain: images/train\nval: images/train\nnames:\n{names}\n")
    return yaml_path


def write_voc_copy(coco_root: Path, dest: Path, limit: int | None = None) -> Path:
    """A Pascal VOC copy of a COCO dataset (crowd left out, class names from COCO)."""
    data = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    images = sorted(data["images"], key=lambda i: i["file_name"])[:limit]
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dest / sub).mkdir(parents=True)
    for img in images:
        stem = Path(img["file_name"]).stem
        os.symlink(coco_root / "train2017" / img["file_name"], dest / "JPEGImages" / img["file_name"])
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = img["file_name"]
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text = str(img["width"])
        ET.SubElement(size, "height").text = str(img["height"])
        for ann in data["annotations"]:
            if ann["image_id"] == img["id"] and not ann["iscrowd"]:
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = names[ann["category_id"]]
                ET.SubElement(obj, "difficult").text = "0"
                box = ET.SubElement(obj, "bndbox")
                x, y, w, h = ann["bbox"]
                for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x, y, x + w, y + h)):
                    ET.SubElement(box, tag).text = repr(float(v))
        ET.ElementTree(root).write(dest / "Annotations" / f"{stem}.xml")
    (dest / "ImageSets" / "Main" / "train.txt").write_text("\n".join(Path(i["file_name"]).stem for i in images) + "\n")
    return dest


def copy_voc_subset(src: Path, dest: Path, ids: list[str]) -> Path:
    """A small VOC root with the given ids of ``src`` (xml copied so tests can edit it, images symlinked)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for i in ids:
        shutil.copy(src / "Annotations" / f"{i}.xml", dest / "Annotations" / f"{i}.xml")
        os.symlink(src / "JPEGImages" / f"{i}.jpg", dest / "JPEGImages" / f"{i}.jpg")
    (dest / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    return dest


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache(tmp_path_factory):
    """detect caches ONNX exports under $GRIDYOLO_CACHE; tests keep them out of the home directory."""
    os.environ["GRIDYOLO_CACHE"] = str(tmp_path_factory.mktemp("gridyolo_cache"))


@pytest.fixture(scope="session")
def overfit_run(bccd_root, tmp_path_factory):
    """One real training run shared by tests: Lite0 (ImageNet) fitted for 60 epochs on 4 bccd images.

    Returns ``{"root": the VOC root of the 4 images, "run": the run directory, "weights": best.ckpt}``.
    """
    from gridyolo.apps.cli import main
    from train_helpers import tiny_bccd, tiny_config

    tmp = tmp_path_factory.mktemp("overfit")
    root = tiny_bccd(tmp / "bccd", count=4, start=10)
    config = tiny_config(
        tmp / "overfit.yaml", root,
        trainer__max_epochs=60, trainer__check_val_every_n_epoch=60,
        model__backbone="efficientnet_lite0", model__weights="imagenet", model__grid_size=7,
        model__head_channels=128, model__optimizer="adamw", model__lr=0.002, model__warmup_epochs=2,
        model__ema_decay=None,
        data__input_size=224, data__resize_mode="stretch", data__batch_size=4,
        data__augment={"scale": 0.0, "translate": 0.0, "flip": 0.0, "hue": 0.0, "saturation": 1.0, "exposure": 1.0},
    )  # fmt: skip
    assert main(["train", "--config", str(config), "--project", str(tmp / "runs")]) == 0
    run = tmp / "runs" / "exp"
    return {"root": root, "run": run, "weights": run / "weights" / "best.ckpt"}


class CountingReader:
    """A reader that records which indices were read (``reads``), delegating to ``reader``."""

    def __init__(self, reader, reads: list[int]) -> None:
        self.reader, self.reads = reader, reads

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int):
        self.reads.append(index)
        return self.reader[index]
