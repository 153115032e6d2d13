"""gridyolo explain: every view is written, responsible cells follow the grid's assignment, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gridyolo.apps.cli import main
from gridyolo.apps.explain import tile_features
from gridyolo.data.yolo_txt import read_labels
from gridyolo.errors import GridyoloError
from train_helpers import write_checkpoint


def test_explain_writes_every_view(tmp_path, bccd_root, capsys):
    ckpt = write_checkpoint(tmp_path / "m.ckpt", ["RBC", "WBC", "Platelets"], grid_size=5, input_size=160)
    image = bccd_root / "JPEGImages" / "BloodImage_00000.jpg"
    labels = tmp_path / "labels.txt"
    labels.write_text("1 0.5 0.5 0.3 0.3\n0 0.1 0.1 0.1 0.1\n")
    out = tmp_path / "explain"
    assert main(["explain", "--weights", str(ckpt), "--image", str(image), "--labels", str(labels),
                 "--layers", "backbone.layers.0,head.reduce", "--out", str(out)]) == 0  # fmt: skip
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["boxes.png", "classes.png", "confidence.png", "features_backbone_layers_0.png",
                     "features_head_reduce.png", "grid.png", "responsible.png"]  # fmt: skip
    assert all(cv2.imread(str(out / n)).shape[0] > 100 for n in names)
    assert capsys.readouterr().out.count("wrote ") == 7


def test_unknown_layer_and_bad_labels_are_one_line(tmp_path, bccd_root, capsys):
    ckpt = write_checkpoint(tmp_path / "m.ckpt", ["RBC", "WBC", "Platelets"])
    image = str(bccd_root / "JPEGImages" / "BloodImage_00000.jpg")
    assert (
        main(["explain", "--weights", str(ckpt), "--image", image, "--layers", "nope", "--out", str(tmp_path / "o1")])
        == 2
    )
    bad = tmp_path / "bad.txt"
    bad.write_text("1 0.5 0.5\n")
    assert (
        main(["explain", "--weights", str(ckpt), "--image", image, "--labels", str(bad), "--out", str(tmp_path / "o2")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("gridyolo: error: unknown layer(s) nope; e.g. backbone.layers.")
    assert err[1] == f"gridyolo: error: {bad}:1: expected 'class cx cy w h', got '1 0.5 0.5'"
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()  # refused before any figure


def test_labels_to_pixels_and_tiling(tmp_path):
    boxes, labels = read_labels(str(tmp_path / "missing.txt"), 10, 10, num_classes=3)  # no file: no objects
    assert boxes.shape == (0, 4) and labels.shape == (0,)
    (tmp_path / "l.txt").write_text("2 0.5 0.25 0.5 0.5\n")
    with pytest.raises(GridyoloError, match="class 2 is outside the class list"):
        read_labels(str(tmp_path / "l.txt"), 200, 100, num_classes=2)
    boxes, labels = read_labels(str(tmp_path / "l.txt"), 200, 100, num_classes=3)
    assert boxes.tolist() == [[50.0, 0.0, 150.0, 50.0]] and labels.tolist() == [2]
    mosaic = tile_features(torch.arange(5 * 4 * 3, dtype=torch.float32).reshape(5, 4, 3))
    assert mosaic.shape == (2 * 5 - 1, 3 * 4 - 1)  # 5 maps of 4×3: 2 rows × 3 columns, 1-px gaps
    assert np.isclose(mosaic[:4, :3].min(), 0) and np.isclose(mosaic[:4, :3].max(), 1)
