"""data convert round trips on real data; data check findings (every image decoded, cached); readers
refuse what they cannot read unambiguously; training checks its images before the first step."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import copy_voc_subset
from gridyolo.apps.cli import main
from gridyolo.data import image_scan
from gridyolo.data.convert import convert_dataset
from gridyolo.data.dataset_report import dataset_report
from gridyolo.data.readers import build_reader
from gridyolo.errors import DatasetError
from train_helpers import tiny_bccd, tiny_config


def _by_stem(reader) -> dict[str, tuple]:
    """Records keyed by image stem, labels as names: what must survive a conversion."""
    names = reader.info.class_names
    out = {}
    for r in reader.records:
        order = np.lexsort([*np.round(r.boxes, 2).T[::-1], r.labels])
        out[Path(r.file).stem] = (
            (r.width, r.height),
            r.boxes[order],
            [names[i] for i in r.labels[order]],
            r.difficult[order].tolist(),
        )
    return out


def _assert_same_records(a, b) -> None:
    ra, rb = _by_stem(a), _by_stem(b)
    assert ra.keys() == rb.keys()
    for stem in ra:
        size_a, boxes_a, labels_a, diff_a = ra[stem]
        size_b, boxes_b, labels_b, diff_b = rb[stem]
        assert size_a == size_b and labels_a == labels_b and diff_a == diff_b, stem
        np.testing.assert_allclose(boxes_a, boxes_b, atol=1e-3, err_msg=stem)


def test_coco_voc_yolo_coco_round_trip_on_coco128(coco128_root, tmp_path, capsys):
    source = build_reader(str(coco128_root), "coco", "train2017")
    names = ",".join(source.info.class_names)
    steps = [
        [str(coco128_root), "--format", "coco", "--split", "train2017", "--to", "voc", "--out", str(tmp_path / "voc")],
        [str(tmp_path / "voc"), "--format", "voc", "--split", "train2017", "--classes", names, "--to", "yolo",
         "--out", str(tmp_path / "yolo")],
        [str(tmp_path / "yolo" / "data.yaml"), "--format", "yolo", "--split", "train2017", "--to", "coco",
         "--out", str(tmp_path / "coco"), "--json"],
    ]  # fmt: skip
    for args in steps:
        assert main(["data", "convert", *args, "--images", "symlink"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == 128 and report["boxes"] == 929 and report["clipped"] == report["dropped"] == []
    back = build_reader(str(tmp_path / "coco"), "coco", "train2017")
    assert back.info.class_names == source.info.class_names  # all 80, in COCO's order, via --classes
    _assert_same_records(source, back)
    assert sum(len(r.crowd_labels) for r in back.records) == 0  # crowd regions do not survive VOC...
    assert main(["data", "convert", str(coco128_root), "--format", "coco", "--split", "train2017", "--to", "voc",
                 "--out", str(tmp_path / "voc2"), "--images", "symlink"]) == 0  # fmt: skip
    assert "10 crowd region(s) (iscrowd) not written" in capsys.readouterr().out  # ...and say so
    coco_again = tmp_path / "coco_again"
    convert_dataset(source, "coco", str(coco_again), "train2017", images="symlink")
    again = build_reader(str(coco_again), "coco", "train2017")  # COCO -> COCO keeps ids and crowd regions
    assert again.info.category_ids == source.info.category_ids
    assert sum(len(r.crowd_labels) for r in again.records) == 10
    assert sorted(r.image_id for r in again.records) == sorted(r.image_id for r in source.records)


def test_voc_yolo_voc_round_trip_on_bccd(bccd_root, tmp_path):
    source = build_reader(str(bccd_root), "voc", "trainval", classes=["RBC", "WBC", "Platelets"])
    convert_dataset(source, "yolo", str(tmp_path / "yolo"), "trainval", images="symlink")
    yolo = build_reader(str(tmp_path / "yolo" / "data.yaml"), "yolo", "trainval")
    assert not yolo.issues  # no rounding noise reported as clipped boxes
    convert_dataset(yolo, "voc", str(tmp_path / "voc"), "trainval", images="hardlink")
    back = build_reader(str(tmp_path / "voc"), "voc", "trainval", classes=["RBC", "WBC", "Platelets"])
    _assert_same_records(source, back)
    _assert_same_records(source, yolo)
    assert len(back) == 292
    assert Path(back.records[0].file).read_bytes() == Path(source.records[0].file).read_bytes()


def test_difficult_survives_coco_and_is_reported_by_yolo(bccd_root, tmp_path):
    root = copy_voc_subset(bccd_root, tmp_path / "src", ["BloodImage_00000", "BloodImage_00001"])
    xml = root / "Annotations" / "BloodImage_00000.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 2))
    source = build_reader(str(root), "voc", "train", classes=["RBC", "WBC", "Platelets"])
    assert int(source.records[0].difficult.sum()) == 2
    convert_dataset(source, "coco", str(tmp_path / "coco"), "train")
    coco = build_reader(str(tmp_path / "coco"), "coco", "train")
    assert int(coco.records[0].difficult.sum()) == 2 and len(coco.records[0].crowd_labels) == 0
    convert_dataset(coco, "voc", str(tmp_path / "voc"), "train")
    _assert_same_records(
        source, build_reader(str(tmp_path / "voc"), "voc", "train", classes=["RBC", "WBC", "Platelets"])
    )
    report = convert_dataset(source, "yolo", str(tmp_path / "yolo"), "train")
    assert report["lost"] == ["2 difficult object(s) not written: YOLO txt has no difficult flag"]
    with pytest.raises(Exception, match="not empty"):
        convert_dataset(source, "yolo", str(tmp_path / "yolo"), "train")
    convert_dataset(source, "yolo", str(tmp_path / "yolo"), "val", exist_ok=True)  # a second split: added
    config = (tmp_path / "yolo" / "data.yaml").read_text()
    assert "train: images/train" in config and "val: images/val" in config


def _coco_copy(coco128_root: Path, dest: Path, count: int = 6) -> Path:
    """A small COCO root with real files copied (tests damage them)."""
    data = json.loads((coco128_root / "annotations" / "instances_train2017.json").read_text())
    data["images"] = data["images"][:count]
    keep = {i["id"] for i in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    (dest / "annotations").mkdir(parents=True)
    (dest / "train").mkdir()
    for image in data["images"]:
        shutil.copy(coco128_root / "train2017" / image["file_name"], dest / "train" / image["file_name"])
    (dest / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return dest


def test_data_check_decodes_every_image_and_reports_by_file(coco128_root, tmp_path, capsys, monkeypatch):
    root = _coco_copy(coco128_root, tmp_path / "coco")
    files = sorted((root / "train").iterdir())
    files[0].write_bytes(b"not an image at all")  # corrupt
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])  # truncated (OpenCV 4 decodes it with a grey tail)
    ann = root / "annotations" / "instances_train.json"
    coco = json.loads(ann.read_text())
    coco["images"][2]["width"] += 10  # annotated size differs from the real one
    ann.write_text(json.dumps(coco))
    assert main(["data", "check", str(root), "--format", "coco", "--split", "train", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    kinds = {Path(p["file"]).name: p["kind"] for p in report["image_problems"]}
    name2 = coco["images"][2]["file_name"]
    assert kinds == {files[0].name: "corrupt", files[1].name: "truncated", name2: "size_mismatch"}
    assert report["ok"] is False

    # the second check reads the cache: nothing is decoded again...
    reader = build_reader(str(root), "coco", "train")
    monkeypatch.setattr(image_scan, "inspect_image", lambda path: pytest.fail(f"decoded {path} again"))
    again = dataset_report(reader)
    assert again["image_problems"] == report["image_problems"]
    # ...until a file changes (size or mtime)
    cv2.imwrite(str(files[0]), np.zeros((coco["images"][0]["height"], coco["images"][0]["width"], 3), np.uint8))
    monkeypatch.undo()
    third = dataset_report(reader)
    assert {Path(p["file"]).name for p in third["image_problems"]} == {files[1].name, name2}


def test_readers_refuse_ambiguous_annotations(coco128_root, bccd_root, tmp_path):
    root = _coco_copy(coco128_root, tmp_path / "coco", count=3)
    ann = root / "annotations" / "instances_train.json"
    original = json.loads(ann.read_text())

    def broken(change) -> str:
        data = json.loads(json.dumps(original))
        change(data)
        ann.write_text(json.dumps(data))
        with pytest.raises(DatasetError) as info:
            build_reader(str(root), "coco", "train")
        message = str(info.value)
        assert str(ann) in message and "\n" not in message
        return message

    def dup_id(d):
        d["images"][1]["id"] = d["images"][0]["id"]

    assert "is used twice" in broken(dup_id)
    assert "has size 0x" in broken(lambda d: d["images"][0].update(width=0))
    assert "appears more than once" in broken(lambda d: d["categories"][1].update(name=d["categories"][0]["name"]))
    assert "needs an integer 'id'" in broken(lambda d: d["categories"][0].pop("id"))
    assert "is not an object" in broken(lambda d: d["annotations"].append([1, 2]))
    assert "is not [x, y, width, height]" in broken(lambda d: d["annotations"][0].update(bbox=[True, 0, 1, 1]))

    yolo = tmp_path / "yolo"
    (yolo / "images" / "train").mkdir(parents=True)
    shutil.copy(bccd_root / "JPEGImages" / "BloodImage_00000.jpg", yolo / "images" / "train")
    for names, message in (("{0: a, 2: c}", "has no class 1"), ("[a, b, a]", "appear more than once")):
        (yolo / "data.yaml").write_text(f"train: images/train\nnames: {names}\n")
        with pytest.raises(DatasetError, match=message):
            build_reader(str(yolo / "data.yaml"), "yolo", "train")


def test_voc_upper_case_extension_is_read_and_noted(bccd_root, tmp_path, capsys):
    root = copy_voc_subset(bccd_root, tmp_path / "voc", ["BloodImage_00000", "BloodImage_00001"])
    link = root / "JPEGImages" / "BloodImage_00001.jpg"
    os.symlink(os.readlink(link), root / "JPEGImages" / "BloodImage_00001.JPG")
    link.unlink()
    assert main(["data", "check", str(root), "--format", "voc", "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and report["image_problems"] == []
    assert len(report["notes"]) == 1 and "BloodImage_00001.JPG" in report["notes"][0]


def test_training_stops_on_a_bad_image_before_the_first_step(bccd_root, tmp_path, capsys):
    root = tiny_bccd(tmp_path / "bccd", count=4)
    victim = root / "JPEGImages" / "BloodImage_00002.jpg"
    victim.unlink()
    victim.write_bytes(b"\xff\xd8 broken jpeg")
    config = tiny_config(tmp_path / "c.yaml", root, trainer__max_epochs=1)
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gridyolo: error: 1 bad image(s) in the training split") and str(victim) in err
    assert "truncated" in err
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
