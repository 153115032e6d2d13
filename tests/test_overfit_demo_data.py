"""Learning really happens: overfit a few real images; the demo's synthetic data is what it claims."""

from __future__ import annotations

import csv
import json

import numpy as np

from gridyolo.cli import main
from gridyolo.data.readers import build_reader
from gridyolo.data.synthetic import write_synthetic_coco
from train_helpers import tiny_bccd, tiny_config


def test_overfit_four_real_images(bccd_root, tmp_path):
    root = tiny_bccd(tmp_path / "bccd", count=4, start=10)
    config = tiny_config(
        tmp_path / "overfit.yaml", root,
        trainer__max_epochs=60, trainer__check_val_every_n_epoch=60,
        model__backbone="efficientnet_lite0", model__weights="imagenet", model__grid_size=7,
        model__head_channels=128, model__optimizer="adamw", model__lr=0.002, model__warmup_epochs=2,
        model__ema_decay=None,
        data__input_size=224, data__resize_mode="stretch", data__batch_size=4,
        data__augment={"scale": 0.0, "translate": 0.0, "flip": 0.0, "hue": 0.0, "saturation": 1.0, "exposure": 1.0},
    )  # fmt: skip
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / "exp"
    losses = [float(r["loss"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("loss")]
    assert losses[0] / np.mean(losses[-3:]) >= 5, (losses[0], losses[-3:])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["map50"] > 0.3, metrics["map50"]  # train-set mAP50 clearly above zero


def test_synthetic_dataset_is_seeded_and_one_object_per_cell(tmp_path):
    a = write_synthetic_coco(str(tmp_path / "a"), {"train": 30, "val": 5}, seed=3, grid_size=5)
    b = write_synthetic_coco(str(tmp_path / "b"), {"train": 30, "val": 5}, seed=3, grid_size=5)
    ja = json.loads((tmp_path / "a" / "annotations" / "instances_train.json").read_text())
    jb = json.loads((tmp_path / "b" / "annotations" / "instances_train.json").read_text())
    assert ja == jb and len(ja["categories"]) == 4
    reader = build_reader(a, "coco", "train")
    assert len(reader) == 30 and not reader.issues
    assert len({(r.width, r.height) for r in reader.records}) > 1  # several sizes: letterbox is exercised
    for record in reader.records:
        centres = (record.boxes[:, :2] + record.boxes[:, 2:]) / 2 / [record.width, record.height] * 5
        cells = {tuple(c) for c in centres.astype(int).tolist()}
        assert len(cells) == len(record.labels) >= 1
    sample = reader[0]
    assert sample.image.std() > 10  # textured, not flat
    assert build_reader(b, "coco", "val").records[0].labels.size >= 1
