"""Property-based tests (hypothesis): parsers, transforms, decode and the argument layer, fed random and
malformed input, give one clear error (DatasetError / usage error) or a valid result, never another
exception."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridyolo.apps.cli import build_parser
from gridyolo.core.decode import decode_grid
from gridyolo.core.letterbox import EvalTransform
from gridyolo.data.readers import build_reader
from gridyolo.data.transforms import AugmentConfig, TrainTransform
from gridyolo.errors import DatasetError

# Derandomized (the same examples every run: the suite cannot flake); GRIDYOLO_HYPOTHESIS_EXAMPLES=2000
# explores further, with fresh randomness, by hand.
EXPLORE = int(os.environ.get("GRIDYOLO_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(max_examples=EXPLORE or 60, derandomize=not EXPLORE, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
WIDTH, HEIGHT = 40, 30


@pytest.fixture(scope="module")
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="gridyolo-props-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fresh(workdir: Path, name: str) -> Path:
    root = workdir / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


def _valid_or_dataset_error(root, fmt, split, **kwargs):
    try:
        reader = build_reader(str(root), fmt, split, **kwargs)
    except DatasetError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return None
    for record in reader.records:  # a valid result: boxes inside the image, finite, labels in range
        assert np.isfinite(record.boxes).all()
        assert (record.boxes[:, :2] >= 0).all() and (record.boxes[:, 2] <= record.width).all()
        assert (record.boxes[:, 3] <= record.height).all()
        assert ((record.labels >= 0) & (record.labels < reader.info.num_classes)).all()
    return reader


def _coco_skeleton() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "thing"}, {"id": 7, "name": "other"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 12], "iscrowd": 0}],
    }


PATHS = [("images",), ("images", 0), ("images", 0, "id"), ("images", 0, "width"), ("images", 0, "file_name"),
         ("categories",), ("categories", 0), ("categories", 1, "id"), ("categories", 0, "name"),
         ("annotations",), ("annotations", 0), ("annotations", 0, "bbox"), ("annotations", 0, "bbox", 2),
         ("annotations", 0, "image_id"), ("annotations", 0, "category_id"), ("annotations", 0, "iscrowd"),
         ()]  # fmt: skip


@SETTINGS
@given(where=st.sampled_from(PATHS), value=json_values)
def test_coco_reader_any_structure(workdir, where, value):
    root = _fresh(workdir, "coco")
    (root / "annotations").mkdir()
    (root / "train").mkdir()
    cv2.imwrite(str(root / "train" / "a.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    data: object = _coco_skeleton()
    if where:
        parent = data
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
    else:
        data = value
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    _valid_or_dataset_error(root, "coco", "train")


@SETTINGS
@given(text=st.text(max_size=200), names=st.one_of(json_values, st.just(["a", "b"])))
def test_yolo_reader_any_labels_and_names(workdir, text, names):
    root = _fresh(workdir, "yolo")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    (root / "labels" / "a.txt").write_text(text)
    (root / "data.yaml").write_text(json.dumps({"path": ".", "train": "images", "names": names}))  # JSON is YAML
    _valid_or_dataset_error(root / "data.yaml", "yolo", "train")


@SETTINGS
@given(
    lines=st.lists(
        st.tuples(st.integers(-2, 3), *[st.floats(-2, 3) | st.sampled_from([math.nan, math.inf, -math.inf])] * 4),
        max_size=5,
    )
)
def test_yolo_reader_random_numbers(workdir, lines):
    root = _fresh(workdir, "yolo_numbers")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    (root / "labels" / "a.txt").write_text("\n".join(" ".join(map(str, line)) for line in lines))
    (root / "data.yaml").write_text("path: .\ntrain: images\nnames: [a, b]\n")
    _valid_or_dataset_error(root / "data.yaml", "yolo", "train")


xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@SETTINGS
@given(size=st.tuples(xml_text, xml_text), box=st.tuples(xml_text, xml_text, xml_text, xml_text), name=xml_text,
       raw=st.one_of(st.none(), st.binary(max_size=60)))  # fmt: skip
def test_voc_reader_any_content(workdir, size, box, name, raw):
    from xml.sax.saxutils import escape

    root = _fresh(workdir, "voc")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    tags = "".join(f"<{t}>{escape(v)}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    xml = (f"<annotation><size><width>{escape(size[0])}</width><height>{escape(size[1])}</height></size>"
           f"<object><name>{escape(name)}</name><bndbox>{tags}</bndbox></object></annotation>")  # fmt: skip
    (root / "Annotations" / "a.xml").write_bytes(raw if raw is not None else xml.encode("utf-8", "surrogatepass"))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    _valid_or_dataset_error(root, "voc", "train", classes=None)


boxes_strategy = st.lists(
    st.tuples(*[st.floats(0, 1)] * 4).map(
        lambda v: (min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3]))
    ),
    max_size=6,
)  # fmt: skip


@SETTINGS
@given(boxes=boxes_strategy, width=st.integers(8, 90), height=st.integers(8, 90), size=st.sampled_from([32, 64]),
       seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["letterbox", "stretch"]))  # fmt: skip
def test_transforms_keep_boxes_inside_and_matched(boxes, width, height, size, seed, mode):
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    xyxy = np.array(boxes, dtype=np.float32).reshape(-1, 4) * [width, height, width, height]
    labels = np.arange(len(xyxy), dtype=np.int64) % 3
    out, out_boxes, out_labels, _ = EvalTransform(size, mode)(image, xyxy, labels)
    assert out.shape == (size, size, 3) and out_boxes.shape == (len(xyxy), 4)
    assert np.isfinite(out_boxes).all() and (out_boxes >= -1e-3).all() and (out_boxes <= size + 1e-3).all()
    keep = (xyxy[:, 2] - xyxy[:, 0] >= 1) & (xyxy[:, 3] - xyxy[:, 1] >= 1)  # what readers pass on: non-empty
    train = TrainTransform(size, mode, AugmentConfig(mosaic=0.0), seed=seed)
    aug, aug_boxes, aug_labels = train(image, xyxy[keep], labels[keep])
    assert aug.shape == (size, size, 3) and aug.dtype == np.uint8
    assert len(aug_boxes) == len(aug_labels) <= keep.sum()
    assert np.isfinite(aug_boxes).all() and (aug_boxes >= 0).all() and (aug_boxes <= size).all()
    assert set(aug_labels.tolist()) <= set(labels[keep].tolist())


@SETTINGS
@given(s=st.integers(1, 5), b=st.integers(1, 3), c=st.integers(1, 4), n=st.integers(1, 3), seed=st.integers(0, 999),
       scale=st.sampled_from([0.0, 1.0, 30.0, 1e4]), conf=st.floats(0, 1), iou=st.floats(0, 1),
       max_det=st.integers(1, 50))  # fmt: skip
def test_decode_any_raw_grid(s, b, c, n, seed, scale, conf, iou, max_det):
    raw = torch.randn(n, s, s, b * 5 + c, generator=torch.Generator().manual_seed(seed)) * scale
    size = 32 * s
    out = decode_grid(raw, b, (size, size), conf_threshold=conf, iou_threshold=iou, max_detections=max_det)
    assert len(out) == n
    for det in out:
        k = len(det["scores"])
        assert det["boxes"].shape == (k, 4) and det["labels"].shape == (k,) and k <= min(max_det, s * s * b * c)
        assert torch.isfinite(det["boxes"]).all() and ((det["boxes"] >= 0) & (det["boxes"] <= size)).all()
        assert ((det["scores"] >= conf) & (det["scores"] <= 1)).all()
        assert ((det["labels"] >= 0) & (det["labels"] < c)).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()  # highest score first


FLAGS = ["--conf", "--iou", "--img-size", "--batch", "--max-frames", "--max-det", "--grid", "--boxes", "--classes",
         "--workers", "--format", "--split", "--to", "--out", "--device", "--backend", "--json",
         "--exist-ok"]  # fmt: skip
COMMANDS = [["detect", "--weights", "w", "--source", "s"],
            ["eval", "--weights", "w", "--data", "d", "--format", "coco"],
            ["export", "--weights", "w"], ["summary"], ["data", "check", "r", "--format", "voc"],
            ["data", "convert", "r", "--format", "voc", "--to", "coco", "--out", "o"]]  # fmt: skip
values = st.one_of(st.integers(-10, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                   st.text(max_size=6))  # fmt: skip


@SETTINGS
@given(command=st.sampled_from(COMMANDS), extra=st.lists(st.tuples(st.sampled_from(FLAGS), values), max_size=4))
def test_argument_layer_any_input(command, extra, capsys):
    argv = [*command, *(part for pair in extra for part in pair)]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err, err
        return
    for name in ("conf", "iou"):
        if getattr(args, name, None) is not None:  # detect's --conf: None means the model's own
            assert 0.0 <= getattr(args, name) <= 1.0 and math.isfinite(getattr(args, name))
    for name in ("img_size", "batch", "max_frames", "max_det", "grid", "boxes", "workers"):
        value = getattr(args, name, None)
        assert value is None or (isinstance(value, int) and value >= 1), (name, value)


@SETTINGS
@given(value=json_values, entry=st.dictionaries(st.sampled_from(["image_id", "category_id", "bbox", "score"]),
                                                json_values, max_size=4))  # fmt: skip
def test_predictions_json_any_structure(workdir, value, entry):
    """Any JSON as a predictions file: one ``GridyoloError`` line, or results that pycocotools can take."""
    from gridyolo.errors import GridyoloError
    from gridyolo.evaluation.predictions import load_predictions

    root = _fresh(workdir, "predictions")
    coco = _coco_skeleton()
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_x.json").write_text(json.dumps(coco))
    (root / "x").mkdir()
    cv2.imwrite(str(root / "x" / "a.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    reader = build_reader(str(root), "coco", "x")
    for data in (value, [entry], [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5, **entry}]):
        path = root / "predictions.json"
        path.write_text(json.dumps(data))
        try:
            results, predictions, _ = load_predictions(str(path), reader)
        except GridyoloError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
            continue
        for row in results:
            assert all(np.isfinite(row["bbox"])) and np.isfinite(row["score"]) and row["image_id"] == 1


@SETTINGS
@given(text=st.text(max_size=300), names=st.lists(st.text(max_size=6), max_size=8))
def test_class_list_any_text(workdir, text, names):
    """A class list file or value: one ``DatasetError`` line, or distinct non-empty names."""
    from gridyolo.data.classes import parse_class_list

    path = _fresh(workdir, "classes") / "names.txt"
    path.write_text(text, encoding="utf-8")
    for value in (str(path), names, ",".join(names)):
        try:
            parsed = parse_class_list(value)
        except DatasetError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
            continue
        assert parsed and len(set(parsed)) == len(parsed) and all(isinstance(n, str) and n for n in parsed)
