"""Readers on the real data: counts, id mappings, crowd / difficult handling, format agreement."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import copy_voc_subset, write_voc_copy, write_yolo_copy
from gridyolo.data import build_reader
from gridyolo.data.dataset_report import dataset_report
from gridyolo.data.voc import VocReader


def test_coco128_counts_and_sparse_ids(coco128_reader):
    report = dataset_report(coco128_reader)
    assert report["images"] == 128
    assert report["boxes"] == 929
    assert report["crowd"] == 10
    assert sum(1 for n in report["classes"].values() if n) == 71
    assert len(report["classes"]) == 80
    assert report["negative_images"] == 2  # images without annotations are kept
    info = coco128_reader.info
    assert info.category_ids[0] == 1 and info.category_ids[-1] == 90  # sparse ids map back
    assert info.class_names[info.category_ids.index(18)] == "dog"
    for record in coco128_reader.records:
        assert record.labels.dtype == np.int64 and (record.labels < 80).all()
        assert record.boxes.dtype == np.float32 and record.boxes.shape[1] == 4


def test_coco128_crowd_kept_aside_not_as_target(coco128_reader):
    crowded = [r for r in coco128_reader.records if len(r.crowd_boxes)]
    assert sum(len(r.crowd_boxes) for r in crowded) == 10
    for record in crowded:  # no crowd box is also a training box
        for crowd in record.crowd_boxes:
            assert not any(np.allclose(crowd, b) for b in record.boxes)


def test_coco_sample_contract(coco128_reader):
    sample = coco128_reader[0]
    assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
    assert sample.orig_size == sample.image.shape[:2]
    assert sample.image_id == coco128_reader.records[0].image_id


def test_bccd_counts_and_dropped_boxes(bccd_reader):
    report = dataset_report(bccd_reader)
    assert (report["images"], report["boxes"]) == (292, 3941)
    dropped = sorted(d["file"].rsplit("/", 1)[-1] for d in report["dropped"])
    assert dropped == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert all("zero or negative area" in d["reason"] for d in report["dropped"])
    assert set(report["classes"]) == {"RBC", "WBC", "Platelets"}


def test_voc_concatenates_roots_and_keeps_difficult(bccd_root, tmp_path):
    a = copy_voc_subset(bccd_root, tmp_path / "a", ["BloodImage_00000", "BloodImage_00001"])
    b = copy_voc_subset(bccd_root, tmp_path / "b", ["BloodImage_00002"])
    xml = b / "Annotations" / "BloodImage_00002.xml"
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    reader = VocReader([str(a), str(b)], "train", classes=["RBC", "WBC", "Platelets"])
    assert len(reader) == 3
    assert len({r.image_id for r in reader.records}) == 3
    assert reader.records[2].difficult.sum() == 1  # flag kept for evaluation...
    assert len(reader.records[2].labels) == len(reader.records[2].difficult)  # ...and the object still a target
    assert reader.records[0].difficult.sum() == 0


def test_three_readers_agree_on_the_same_images(coco128_root, tmp_path):
    coco = build_reader(str(coco128_root), "coco", "train2017")
    voc = build_reader(
        str(write_voc_copy(coco128_root, tmp_path / "voc", limit=40)), "voc", "train", classes=coco.info.class_names
    )
    yolo = build_reader(str(write_yolo_copy(coco128_root, tmp_path / "yolo", limit=40)), "yolo", "train")
    by_stem = {r.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]: r for r in coco.records}
    assert len(voc) == len(yolo) == 40
    assert voc.info.class_names == yolo.info.class_names == coco.info.class_names
    for rv, ry in zip(voc.records, yolo.records):
        stem = rv.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        assert ry.file.rsplit("/", 1)[-1].startswith(stem)
        rc = by_stem[stem]
        assert (rv.width, rv.height) == (ry.width, ry.height) == (rc.width, rc.height)
        np.testing.assert_array_equal(rv.labels, rc.labels)
        np.testing.assert_array_equal(ry.labels, rc.labels)
        np.testing.assert_allclose(rv.boxes, rc.boxes, atol=1e-3)
        np.testing.assert_allclose(ry.boxes, rc.boxes, atol=1e-2)  # 9 decimals of normalized coords
    assert voc[0].image.shape == yolo[0].image.shape


def test_yolo_reader_full_coco128_copy(coco128_root, tmp_path):
    reader = build_reader(str(write_yolo_copy(coco128_root, tmp_path)), "yolo", "train")
    report = dataset_report(reader)
    assert (report["images"], report["boxes"], report["negative_images"]) == (128, 929, 2)
    assert reader.info.category_ids == tuple(range(80))


@pytest.mark.parametrize("names", ["[a, b]", "{0: a, 1: b}"])
def test_yolo_names_list_or_dict(tmp_path, names):
    import cv2

    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "val" / "x.png"), np.zeros((20, 40, 3), np.uint8))
    (tmp_path / "labels" / "val" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n\n")
    (tmp_path / "d.yaml").write_text(f"path: .\nval: images/val\nnames: {names}\n")
    reader = build_reader(str(tmp_path / "d.yaml"), "yolo", "val")
    assert reader.info.class_names == ("a", "b")
    np.testing.assert_allclose(reader.records[0].boxes, [[10, 5, 30, 15]])
    assert reader.records[0].labels.tolist() == [1]
