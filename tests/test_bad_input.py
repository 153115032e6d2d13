"""Every bad input named in the core issue: one clear error naming the file (and line), never a bare
traceback from OpenCV / albumentations / the xml or json parser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import copy_voc_subset
from gridyolo.data import build_reader
from gridyolo.data.box_cleanup import clip_and_filter_boxes
from gridyolo.data.images import load_image
from gridyolo.data.voc import VOC_CLASSES
from gridyolo.errors import DatasetError

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def _mini_coco(tmp_path, annotations, images=None, categories=None):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "a.jpg"), np.full((40, 60, 3), 128, np.uint8))
    data = {
        "images": images or [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 40}],
        "annotations": annotations,
        "categories": categories or [{"id": 3, "name": "car"}, {"id": 7, "name": "train"}],
    }
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return tmp_path


def _ann(bbox, cat=3, ann_id=1, crowd=0):
    return {"id": ann_id, "image_id": 1, "category_id": cat, "bbox": bbox, "iscrowd": crowd}


def test_boxes_outside_are_clipped_and_recorded():
    boxes = np.array([[-5, 10, 30, 20], [10, 10, 70, 50], [65, 5, 80, 9], [5, 5, 5, 9]], np.float32)
    clipped, keep, issues = clip_and_filter_boxes(boxes, 60, 40, "x.xml")
    assert keep.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(clipped, [[0, 10, 30, 20], [10, 10, 60, 40]])
    assert [i.action for i in issues] == ["clipped", "clipped", "dropped", "dropped"]
    assert "after clipping" in issues[2].reason and all(i.file == "x.xml" for i in issues)


def test_non_finite_box_dropped():
    _, keep, issues = clip_and_filter_boxes(np.array([[np.nan, 1, 2, 3]]), 10, 10, "f")
    assert not keep[0] and "non-finite" in issues[0].reason


def test_coco_clipping_reported_per_image_file(tmp_path):
    reader = build_reader(str(_mini_coco(tmp_path, [_ann([50, 30, 20, 20]), _ann([0, 0, 0, 5], ann_id=2)])), "coco")
    np.testing.assert_array_equal(reader.records[0].boxes, [[50, 30, 60, 40]])
    assert len(reader.clipped) == 1 and len(reader.dropped) == 1
    assert reader.dropped[0].file.endswith("a.jpg")


def test_coco_unknown_category(tmp_path):
    with pytest.raises(DatasetError, match=r"instances_train\.json: annotation id 1: category_id 99 is not in"):
        build_reader(str(_mini_coco(tmp_path, [_ann([1, 1, 5, 5], cat=99)])), "coco")


def test_coco_bad_bbox(tmp_path):
    with pytest.raises(DatasetError, match=r"annotation id 1: bbox \[1, 2\] is not"):
        build_reader(str(_mini_coco(tmp_path, [_ann([1, 2])])), "coco")


def test_coco_malformed_json_names_file_and_line(tmp_path):
    root = _mini_coco(tmp_path, [])
    (root / "annotations" / "instances_train.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=r"instances_train\.json:2: malformed JSON"):
        build_reader(str(root), "coco")


def test_coco_missing_image(tmp_path):
    root = _mini_coco(tmp_path, [], images=[{"id": 1, "file_name": "gone.jpg", "width": 6, "height": 4}])
    with pytest.raises(DatasetError, match=r"gone\.jpg: image file not found"):
        build_reader(str(root), "coco")


def test_unreadable_image_names_file(tmp_path):
    root = _mini_coco(tmp_path, [_ann([1, 1, 5, 5])])
    (root / "train" / "a.jpg").write_bytes(b"this is not a jpeg")
    reader = build_reader(str(root), "coco")
    with pytest.raises(DatasetError, match=r"a\.jpg: cannot decode image"):
        reader[0]


def test_image_size_disagreeing_with_annotation(tmp_path):
    root = _mini_coco(tmp_path, [], images=[{"id": 1, "file_name": "a.jpg", "width": 61, "height": 40}])
    with pytest.raises(DatasetError, match=r"a\.jpg: image is 60x40 but its annotation says 61x40"):
        build_reader(str(root), "coco")[0]


def test_voc_label_outside_class_list(bccd_root):
    with pytest.raises(
        DatasetError, match=r"BloodImage_\d+\.xml: object '(RBC|WBC|Platelets)' is not in the class list"
    ):
        build_reader(str(bccd_root), "voc", "trainval", classes=VOC_CLASSES)


def test_voc_malformed_xml_names_file_and_line(bccd_root, tmp_path):
    root = copy_voc_subset(bccd_root, tmp_path, ["BloodImage_00000"])
    xml = root / "Annotations" / "BloodImage_00000.xml"
    xml.write_text(xml.read_text().replace("</object>", "", 1))
    with pytest.raises(DatasetError, match=r"BloodImage_00000\.xml:\d+: malformed XML"):
        build_reader(str(root), "voc", "train", classes=BCCD_CLASSES)


def test_voc_non_numeric_box(bccd_root, tmp_path):
    root = copy_voc_subset(bccd_root, tmp_path, ["BloodImage_00000"])
    xml = root / "Annotations" / "BloodImage_00000.xml"
    text = xml.read_text()
    start = text.index("<xmin>") + len("<xmin>")
    xml.write_text(text[:start] + "abc" + text[text.index("</xmin>") :])
    with pytest.raises(DatasetError, match=r"BloodImage_00000\.xml: object #1 .* non-numeric <bndbox>"):
        build_reader(str(root), "voc", "train", classes=BCCD_CLASSES)


def test_voc_missing_image(bccd_root, tmp_path):
    root = copy_voc_subset(bccd_root, tmp_path, ["BloodImage_00000"])
    (root / "JPEGImages" / "BloodImage_00000.jpg").unlink()
    with pytest.raises(DatasetError, match=r"BloodImage_00000\.jpg: image file not found"):
        build_reader(str(root), "voc", "train", classes=BCCD_CLASSES)


def test_voc_unknown_split(bccd_root):
    with pytest.raises(DatasetError, match=r"split 'nope' not found \(splits: test, train, trainval, val\)"):
        build_reader(str(bccd_root), "voc", "nope")


def _mini_yolo(tmp_path, label_text, names="[a, b]"):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "train" / "x.jpg"), np.zeros((20, 40, 3), np.uint8))
    (tmp_path / "labels" / "train" / "x.txt").write_text(label_text)
    (tmp_path / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {names}\n")
    return tmp_path / "data.yaml"


def test_yolo_malformed_line_names_file_and_line(tmp_path):
    with pytest.raises(DatasetError, match=r"x\.txt:2: expected 'class cx cy w h', got '0 0.5 0.5'"):
        build_reader(str(_mini_yolo(tmp_path, "0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n")), "yolo")


def test_yolo_class_outside_list(tmp_path):
    with pytest.raises(DatasetError, match=r"x\.txt:1: class 5 is outside the class list \(0\.\.1\)"):
        build_reader(str(_mini_yolo(tmp_path, "5 0.5 0.5 0.1 0.1\n")), "yolo")


def test_yolo_box_partly_outside_is_clipped(tmp_path):
    reader = build_reader(str(_mini_yolo(tmp_path, "1 0.95 0.5 0.2 0.2\n")), "yolo")
    np.testing.assert_allclose(reader.records[0].boxes, [[34, 8, 40, 12]], atol=1e-4)
    assert len(reader.clipped) == 1 and reader.clipped[0].file.endswith("x.txt")


def test_yolo_malformed_yaml(tmp_path):
    (tmp_path / "data.yaml").write_text("names: [a, b\ntrain: x\n")
    with pytest.raises(DatasetError, match=r"data\.yaml:\d+: malformed YAML"):
        build_reader(str(tmp_path / "data.yaml"), "yolo")


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: np.full((8, 9), 200, np.uint8), "gray"),
        (lambda: np.dstack([np.full((8, 9, 3), 50, np.uint8), np.full((8, 9), 255, np.uint8)]), "rgba"),
        (lambda: np.full((8, 9, 3), 65535, np.uint16), "16-bit"),
        (lambda: np.full((8, 9), 30000, np.uint16), "16-bit gray"),
    ],
)
def test_odd_images_load_as_rgb_uint8(tmp_path, make, shape):
    path = str(tmp_path / "x.png")
    assert cv2.imwrite(path, make())
    image = load_image(path)
    assert image.shape == (8, 9, 3) and image.dtype == np.uint8, shape
    if shape == "16-bit":
        assert (image == 255).all()
    if shape == "16-bit gray":
        assert (image == round(30000 / 65535 * 255)).all()


def test_missing_image_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.jpg: image file not found"):
        load_image(str(tmp_path / "nope.jpg"))


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_root_that_does_not_exist(tmp_path, fmt):
    with pytest.raises(DatasetError, match=r"dataset root does not exist"):
        build_reader(str(tmp_path / "missing"), fmt)


def test_format_that_does_not_match(coco128_root, bccd_root, tmp_path):
    with pytest.raises(DatasetError, match=r"not a Pascal VOC root .*looks like a COCO dataset: try --format coco"):
        build_reader(str(coco128_root), "voc")
    with pytest.raises(DatasetError, match=r"not a COCO root .*looks like a VOC dataset: try --format voc"):
        build_reader(str(bccd_root), "coco")
    with pytest.raises(DatasetError, match=r"not a YOLO txt root"):
        build_reader(str(bccd_root), "yolo")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gridyolo", *args], capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_without_traceback(coco128_root, tmp_path):
    for args in (
        ["data", "check", str(coco128_root), "--format", "voc"],
        ["data", "check", str(tmp_path / "missing"), "--format", "coco"],
    ):
        result = _cli(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("gridyolo: error: ")


def test_cli_missing_image_inside_dataset(bccd_root, tmp_path):
    root = copy_voc_subset(bccd_root, tmp_path, ["BloodImage_00000", "BloodImage_00001"])
    shutil.copy(root / "Annotations" / "BloodImage_00000.xml", root / "Annotations" / "BloodImage_00009.xml")
    (root / "ImageSets" / "Main" / "train.txt").write_text("BloodImage_00000\nBloodImage_00009\n")
    result = _cli("data", "check", str(root), "--format", "voc", "--split", "train")
    assert result.returncode == 2 and "BloodImage_00009.jpg: image file not found" in result.stderr
