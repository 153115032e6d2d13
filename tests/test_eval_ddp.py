"""Evaluation parity: gridyolo eval == pycocotools on its --save-json == validation during training,
single process and 2-process DDP (gloo on the CPU, duplicates from DistributedSampler dropped)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gridyolo.apps.cli import main
from train_helpers import tiny_bccd, tiny_config


def _pycocotools(gt_json, results_json):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        evaluator = COCOeval(gt, gt.loadRes(str(results_json)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _eval_json(capsys, *args):
    capsys.readouterr()
    assert main(["eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def ddp_run(bccd_root, tmp_path_factory):
    """One epoch on 9 images (odd: DistributedSampler pads one duplicate) with 2 processes."""
    tmp = tmp_path_factory.mktemp("ddp")
    root = tiny_bccd(tmp / "bccd", count=9)
    config = tiny_config(tmp / "tiny.yaml", root, trainer__max_epochs=1, data__val_batch_size=1)
    result = subprocess.run(
        [sys.executable, "-m", "gridyolo", "train", "--config", str(config), "--project", str(tmp / "runs"),
         "--trainer.strategy", "ddp", "--trainer.devices", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, root


def test_ddp_validation_equals_single_process_eval(ddp_run, capsys):
    tmp, root = ddp_run
    run = tmp / "runs" / "exp"
    assert not (tmp / "runs" / "exp2").exists()  # rank 1 wrote into rank 0's run directory
    during_training = json.loads((run / "metrics.json").read_text())
    assert during_training["images"] == 9  # no duplicated, no missing image
    single = _eval_json(capsys, "--weights", str(run / "weights" / "last.ckpt"), "--data", str(root),
                        "--format", "voc", "--split", "train", "--batch", "1")  # fmt: skip
    assert single["images"] == 9
    for key in ("map", "map50", "map75", "mar_100"):
        assert single[key] == during_training[key], key
    assert single["per_class"] == during_training["per_class"]


def test_eval_equals_pycocotools_on_saved_json(ddp_run, capsys, tmp_path):
    tmp, root = ddp_run
    weights = str(tmp / "runs" / "exp" / "weights" / "last.ckpt")
    saved = tmp_path / "out" / "predictions.json"
    for backend in ("pycocotools", "faster_coco_eval"):
        metrics = _eval_json(capsys, "--weights", weights, "--data", str(root), "--format", "voc", "--split", "train",
                             "--save-json", str(saved), "--backend", backend, "--exist-ok")  # fmt: skip
        assert metrics["backend"] == backend
        stats = _pycocotools(tmp_path / "out" / "predictions_gt.json", saved)
        # pycocotools: bit-identical; faster-coco-eval sums in another order (C++): within an ULP or two
        tolerance = 0 if backend == "pycocotools" else 1e-12
        for key, index in (("map", 0), ("map50", 1), ("map75", 2), ("map_small", 3), ("mar_100", 8)):
            assert metrics[key] == pytest.approx(stats[index], abs=tolerance, rel=0), (backend, key)
        assert 0 <= metrics["voc07_map50"] <= 1 and 0 <= metrics["voc_map50"] <= 1
    results = json.loads(saved.read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} == set(results[0])
    assert {r["category_id"] for r in results} <= {1, 2, 3}
