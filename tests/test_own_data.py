"""Your own data, first try: class lists, a grid that fits, thresholds a user can use, what ships is what
is shown, resume that continues, detect on a list of files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from gridyolo.apps.cli import main
from gridyolo.data.classes import parse_class_list
from gridyolo.data.grid_fit import SMALL_OBJECT_CELLS, grid_report, grid_warnings, input_fractions, owning_share
from gridyolo.data.readers import build_reader
from gridyolo.data.sample import ImageRecord
from gridyolo.errors import DatasetError
from gridyolo.evaluation.voc_ap import best_f1_threshold, threshold_text
from gridyolo.models.checkpoint import load_checkpoint
from train_helpers import tiny_bccd, tiny_config, write_checkpoint

CLASSES = ["RBC", "WBC", "Platelets"]


def test_class_lists_read_the_same_everywhere(bccd_root, tmp_path, capsys):
    assert parse_class_list("raccoon") == ["raccoon"]  # one class, never its letters
    assert parse_class_list("RBC, WBC,Platelets") == CLASSES
    assert parse_class_list(["RBC", "WBC", "Platelets"]) == CLASSES
    (tmp_path / "names.txt").write_text("# my classes\nRBC\nWBC\n\nPlatelets\n")
    (tmp_path / "names.yaml").write_text("names: {0: RBC, 1: WBC, 2: Platelets}\n")
    assert parse_class_list(str(tmp_path / "names.txt")) == parse_class_list(str(tmp_path / "names.yaml")) == CLASSES
    assert len(parse_class_list("voc")) == 20 and parse_class_list(None) is None
    for bad, message in (("a,,b", "non-empty"), ("a,a", "more than once"), (str(tmp_path / "no.txt"), "not found")):
        with pytest.raises(DatasetError, match=message):
            parse_class_list(bad)
    as_text = build_reader(str(bccd_root), "voc", "test", classes="RBC,WBC,Platelets")
    as_file = build_reader(str(bccd_root), "voc", "test", classes=str(tmp_path / "names.txt"))
    assert as_text.info == as_file.info and list(as_text.info.class_names) == CLASSES
    assert main(["data", "check", str(bccd_root), "--format", "voc", "--split", "test", "--classes",
                 str(tmp_path / "names.yaml"), "--no-decode", "--json"]) == 0  # fmt: skip
    assert list(json.loads(capsys.readouterr().out)["classes"]) == CLASSES
    root = tiny_bccd(tmp_path / "one", count=2)  # a config that names one class as a plain string
    config = tiny_config(tmp_path / "t.yaml", root, data__classes="RBC,WBC,Platelets", trainer__max_epochs=1)
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs")]) == 0
    saved = load_checkpoint(str(tmp_path / "runs" / "exp" / "weights" / "last.ckpt"))
    assert saved["gridyolo"]["class_names"] == CLASSES


def test_data_check_recommends_a_grid_that_fits(bccd_root, capsys):
    reader = build_reader(str(bccd_root), "voc", "trainval", classes=CLASSES)
    report = grid_report(reader.records, stride=16, class_names=CLASSES)
    shares = {c["grid_size"]: c["owning_cell"] for c in report["candidates"]}
    assert shares[4] < shares[7] < shares[10] <= shares[20] <= 1.0  # finer grids lose fewer objects
    rec = report["recommended"]
    # the measured rule: one cell per feature-map position at the smallest CPU input where the small objects
    # (10th percentile of the shorter side; of the smallest class, bccd's Platelets, 7% of the boxes) span
    # SMALL_OBJECT_CELLS stride-16 cells; the coarse grid for YOLOv1's loss beside it
    assert rec["grid_size"] == rec["feature_map"] == rec["input_size"] // 16 and rec["input_size"] >= 256
    smallest = report["object_size"]["smallest_class"]
    assert smallest["class"] == "Platelets" and smallest["p10"] < report["object_size"]["shorter_side"]["p10"]
    wanted = SMALL_OBJECT_CELLS * 16
    assert smallest["p10"] * rec["input_size"] >= wanted and smallest["p10"] * (rec["input_size"] - 16) < wanted
    assert "10th percentile of Platelets" in rec["why"]
    # with bccd_lite0.yaml's stretch: the 416 px it was measured best at (test mAP 0.576 against 0.549 at 320)
    assert grid_report(reader.records, stride=16, resize_mode="stretch", class_names=CLASSES)["recommended"][
        "input_size"] == 416  # fmt: skip
    coarse = rec["coarse_grid_size"]
    assert shares[coarse] >= 0.97 and all(s < 0.97 for g, s in shares.items() if g < coarse) and coarse < 16
    # the share is what the loss sees: assign_cells on the letterboxed boxes of every image
    boxes, index = input_fractions(reader.records)
    assert owning_share(boxes, index, 7) == pytest.approx(shares[7], abs=1e-4)
    assert main(["data", "check", str(bccd_root), "--format", "voc", "--split", "trainval", "--classes",
                 "RBC,WBC,Platelets", "--no-decode"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"recommended: grid_size {rec['grid_size']}, input_size {rec['input_size']}" in out
    assert "--model.ignore_iou 0.5" in out and "one cell per feature-map position" in out
    assert f"with YOLOv1's loss instead: grid_size {coarse} at the same input" in out
    assert "object size sqrt(area) / input" in out
    # training's warnings: a grid the feature map does not divide into, and objects that lose their cell
    notes = grid_warnings(reader.records, grid_size=3, input_size=320, stride=16)
    assert "20x20 feature map does not divide into the 3x3 grid" in notes[0] and "share a cell" in notes[1]
    assert grid_warnings(reader.records, grid_size=20, input_size=320, stride=16) == []


def _record(boxes, labels, image_id=0):
    n = len(labels)
    return ImageRecord("x.jpg", image_id, 100, 100, np.array(boxes, np.float32).reshape(-1, 4),
                       np.array(labels, np.int64), np.zeros(n, bool))  # fmt: skip


def test_a_rare_small_class_sets_the_input_size():
    """Large objects alone keep the smallest input; ten small boxes of another class (too few to move the
    10th percentile of all 160) raise it until they span SMALL_OBJECT_CELLS cells; fewer than ten do not."""
    large = [[10 + i / 4, 10, 60 + i / 4, 60] for i in range(150)]  # 50 px of 100 on each side

    def recommended(small_count):
        small = [[5, 5, 9, 9]] * small_count  # 4 px of 100
        records = [_record(large + small, [0] * 150 + [1] * small_count)]
        return grid_report(records, stride=16, class_names=["big", "small"])

    assert recommended(0)["recommended"]["input_size"] == 256
    assert recommended(9)["object_size"]["smallest_class"]["class"] == "big"  # too few for a percentile
    report = recommended(10)
    assert report["object_size"]["smallest_class"] == {"class": "small", "p10": 0.04}
    assert report["object_size"]["shorter_side"]["p10"] == 0.5
    assert report["recommended"]["input_size"] == 512  # the CPU range's top: 0.04 * 512 = 20.5 px < 1.3 cells
    assert "10th percentile of small) span 20 px at 512 px, 1.28 cells" in report["recommended"]["why"]


def test_f1_threshold_by_hand():
    """Two objects; detections scored 0.9 (hit), 0.8 (miss), 0.7 (hit), 0.1 (miss): F1 is 2/3, 1/2, 4/5,
    2/3 at those thresholds, so 0.7 with F1 0.8."""
    records = [_record([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    detections = {0: {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [80, 80, 90, 90]]),
                      "scores": np.array([0.9, 0.8, 0.7, 0.1]), "labels": np.array([0, 0, 0, 0])}}  # fmt: skip
    threshold, f1 = best_f1_threshold(records, detections, 1)
    assert threshold == pytest.approx(0.7) and f1 == pytest.approx(0.8)
    assert best_f1_threshold(records, {0: {"boxes": np.zeros((0, 4)), "scores": [], "labels": []}}, 1) is None


def test_a_briefly_trained_model_detects_with_default_settings(overfit_run, tmp_path, capsys):
    """The F1-optimal threshold is stored at training and is detect's default, also in the exports."""
    from gridyolo.deploy.export import export_info

    stored = load_checkpoint(str(overfit_run["weights"]))["gridyolo"]["conf_threshold"]
    assert stored is not None and 0 < stored <= 1  # 0.09 here: this model's boxes mostly score below 0.25
    images = overfit_run["root"] / "JPEGImages"
    for name, extra in (("ckpt", []), ("torchscript", ["--format", "torchscript"]), ("onnx", ["--format", "onnx"])):
        weights = overfit_run["weights"]
        if name != "ckpt":
            weights = tmp_path / f"model.{name}"
            assert main(["export", "--weights", str(overfit_run["weights"]), "--out", str(weights), *extra]) == 0
            assert export_info(str(weights))["conf_threshold"] == pytest.approx(stored)
        capsys.readouterr()
        assert main(["detect", "--weights", str(weights), "--source", str(images), "--out", str(tmp_path / name),
                     "--quiet", "--save-json"]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert f"at --conf {threshold_text(stored)} (the model's F1-optimal threshold)" in out, out
        records = [json.loads(line) for line in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
        assert len(records) == 4 and all(len(r["boxes"]) > 0 for r in records)  # objects on every image
        assert min(s for r in records for s in r["scores"]) >= stored - 1e-6


def test_what_ships_is_what_is_shown(overfit_run, tmp_path, capsys):
    metrics = json.loads((overfit_run["run"] / "metrics.json").read_text())
    assert metrics["metrics_of"].startswith("best.ckpt (epoch ")
    best_row = max((r for r in metrics["history"] if "map" in r), key=lambda r: r["map"])
    assert metrics["map"] == pytest.approx(best_row["map"], abs=1e-6)  # best.ckpt evaluated again: the same
    capsys.readouterr()
    assert main(["eval", "--weights", str(overfit_run["weights"]), "--data", str(overfit_run["root"]), "--format",
                 "voc", "--split", "train", "--classes", ",".join(CLASSES), "--plots", str(tmp_path / "p"),
                 "--json"]) == 0  # fmt: skip
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["map"] == pytest.approx(metrics["map"], abs=1e-6)
    stored = load_checkpoint(str(overfit_run["weights"]))["gridyolo"]["conf_threshold"]
    assert evaluated["confusion_threshold"] == pytest.approx(stored)  # the matrix at the threshold detect uses
    assert (tmp_path / "p" / "confusion_matrix.png").exists() and (tmp_path / "p" / "pr_curves.png").exists()


def test_summary_shows_exactly_the_checkpoint_and_the_formula_holds(tmp_path, capsys):
    from gridyolo.models.checkpoint import detector_from_checkpoint

    weights = write_checkpoint(tmp_path / "m.ckpt", CLASSES, backbone="efficientnet_lite0", grid_size=4)
    assert main(["summary", "--weights", str(weights), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model, _ = detector_from_checkpoint(str(weights))
    assert summary["params"] == sum(p.numel() for p in model.parameters())  # head_channels 32, not the default
    assert summary["output_shape"] == [1, 4, 4, 2 * 5 + 3] and summary["input_shape"][-1] == 128
    convs = [row for row in summary["layers"] if "groups" in row]
    assert any(r["groups"] > 1 for r in convs) and any(not r["bias"] for r in convs) and any(r["bias"] for r in convs)
    for row in convs:  # depthwise, bias-free and biased rows alike
        k = row["kernel"][0] * row["kernel"][1]
        assert row["params"] == k * row["in_channels"] // row["groups"] * row["out_channels"] + row["out_channels"] * \
            row["bias"], row  # fmt: skip
    assert main(["summary", "--config", "configs/bccd_lite0.yaml", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output_shape"] == [1, 26, 26, 13]
    assert main(["summary", "--weights", str(weights), "--grid", "5"]) == 2


def _lrs(run):
    return [float(r["lr"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("lr")]


def test_resume_continues_the_schedule_and_refuses_a_no_op(tmp_path, capsys):
    root = tiny_bccd(tmp_path / "bccd", count=8)
    config = tiny_config(tmp_path / "t.yaml", root, trainer__max_epochs=2)
    runs = tmp_path / "runs"
    assert main(["train", "--config", str(config), "--project", str(runs), "--name", "first"]) == 0
    last = runs / "first" / "weights" / "last.ckpt"
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--project", str(runs), "--resume", str(last)]) == 2
    assert "holds 2 finished epoch(s) and --trainer.max_epochs is 2: nothing left to train" in capsys.readouterr().err
    assert not (runs / "exp").exists()
    assert main(["train", "--config", str(config), "--project", str(runs), "--name", "more", "--resume", str(last),
                 "--trainer.max_epochs", "4"]) == 0  # fmt: skip
    before, after = _lrs(runs / "first"), _lrs(runs / "more")
    assert after[0] <= before[-1] + 1e-9  # where it left off (the end of the cosine), not a jump back up
    assert max(after) <= before[-1] + 1e-9
    history = json.loads((runs / "more" / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]


def test_a_resumed_run_gets_the_time_limit_it_is_given(tmp_path):
    from gridyolo.training.cli import SafeCheckpointIO

    weights = write_checkpoint(tmp_path / "m.ckpt", CLASSES)
    checkpoint = torch.load(weights, weights_only=True)
    checkpoint["callbacks"] = {"Timer": {"time_elapsed": {"train": 3600.0}}, "RunSummary": {"history": []}}
    torch.save(checkpoint, weights)
    loaded = SafeCheckpointIO().load_checkpoint(weights)
    assert list(loaded["callbacks"]) == ["RunSummary"]


def test_detect_on_a_list_of_files_counts_and_says_when_nothing_is_found(bccd_root, tmp_path, capsys):
    weights = write_checkpoint(tmp_path / "m.ckpt", CLASSES)
    split = bccd_root / "ImageSets" / "Main" / "test.txt"
    assert main(["detect", "--weights", str(weights), "--source", str(split), "--out", str(tmp_path / "a"),
                 "--quiet", "--max-frames", "5"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    found = next(line for line in out.splitlines() if line.startswith("found "))
    assert "5 images" in out and any(f" {name}" in found for name in CLASSES), out
    listed = tmp_path / "list.txt"
    listed.write_text(f"{bccd_root / 'JPEGImages' / 'BloodImage_00000.jpg'}\nJPEGImages/BloodImage_00001.jpg\n")
    (tmp_path / "JPEGImages").symlink_to(bccd_root / "JPEGImages")  # relative to the list file
    assert main(["detect", "--weights", str(weights), "--source", str(listed), "--out", str(tmp_path / "b"),
                 "--quiet", "--conf", "1.0"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "2 images" in captured.out and "found no boxes at --conf 1 (--conf)" in captured.out
    assert "no box scored 1 or more in 2 image(s); the highest score was 0." in captured.err
    listed.write_text("missing.jpg\n")
    assert main(["detect", "--weights", str(weights), "--source", str(listed), "--out", str(tmp_path / "c")]) == 2
    assert "1 of 1 line(s) name no image (first: 'missing.jpg')" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
