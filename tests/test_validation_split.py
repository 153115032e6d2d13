"""A validation split carved from the training split: stratified, seeded, recorded, used for best.ckpt."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gridyolo.apps.cli import main
from gridyolo.data.carve import carve_validation
from gridyolo.data.readers import build_reader
from gridyolo.evaluation.coco_metrics import coco_ground_truth
from train_helpers import tiny_bccd, tiny_config

CLASSES = ["RBC", "WBC", "Platelets"]


def test_carved_split_is_disjoint_seeded_and_stratified(bccd_root):
    reader = build_reader(str(bccd_root), "voc", "trainval", classes=CLASSES)
    train, val, record = carve_validation(reader, 0.15, seed=0)
    files = lambda part: {r.file for r in part.records}  # noqa: E731
    assert not files(train) & files(val) and files(train) | files(val) == {r.file for r in reader.records}
    assert len(val) == round(0.15 * len(reader)) == record["val_images"]
    assert carve_validation(reader, 0.15, seed=0)[2] == record  # the same files and seed: the same split
    assert carve_validation(reader, 0.15, seed=1)[2]["val_files"] != record["val_files"]
    per_split = record["objects_per_class"]
    share = {name: per_split["val"][name] / (per_split["train"][name] + per_split["val"][name]) for name in CLASSES}
    assert all(0.08 < s < 0.25 for s in share.values()), share  # every class, the rare ones too, near 15%
    assert val.info == reader.info and train.info == reader.info


def test_rare_class_reaches_the_validation_split(bccd_root):
    """WBC and Platelets are rare; an image counts for its rarest class, so both land in val."""
    reader = build_reader(str(bccd_root), "voc", "test", classes=CLASSES)
    _, val, record = carve_validation(reader, 0.1, seed=3)
    counts = Counter(CLASSES[int(label)] for r in val.records for label in r.labels)
    assert counts["WBC"] > 0 and counts["Platelets"] > 0


def test_a_carved_coco_part_is_evaluated_against_its_own_images(coco128_root):
    reader = build_reader(str(coco128_root), "coco", "train2017")
    _, val, _ = carve_validation(reader, 0.2, seed=0)
    ground_truth = coco_ground_truth(val)
    ids = {r.image_id for r in val.records}
    assert {i["id"] for i in ground_truth["images"]} == ids
    assert ground_truth["annotations"] and {a["image_id"] for a in ground_truth["annotations"]} <= ids


def test_training_validates_on_the_carved_part_and_records_it(bccd_root, tmp_path, capsys):
    root = tiny_bccd(tmp_path / "bccd", count=8)
    config = tiny_config(tmp_path / "carve.yaml", root, trainer__max_epochs=1, data__val_split=None,
                         data__val_fraction=0.25)  # fmt: skip
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs"), "--name", "carve"]) == 0
    run = tmp_path / "runs" / "carve"
    record = json.loads((run / "val_split.json").read_text())
    assert record["val_images"] == 2 and record["train_images"] == 6 and len(record["val_files"]) == 2
    assert json.loads((run / "metrics.json").read_text())["images"] == 2  # best.ckpt scored on those two


@pytest.mark.parametrize(("overrides", "message"), [
    ({"data__val_fraction": 0.2}, "either val_split or val_fraction"),  # both
    ({"data__val_split": None}, "either val_split or val_fraction"),  # neither
    ({"data__val_split": None, "data__val_fraction": 1.5}, "val_fraction"),
])  # fmt: skip
def test_bad_validation_settings_are_one_line_errors(bccd_root, tmp_path, capsys, overrides, message):
    root = tiny_bccd(tmp_path / "bccd", count=4)
    config = tiny_config(tmp_path / "bad.yaml", root, **overrides)
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(message in line for line in err), err
    assert not (tmp_path / "runs" / "exp").exists()
