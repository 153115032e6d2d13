"""results.json keeps numbers whose names still mean what was measured; the GPU benchmark skips cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import records  # noqa: E402  (benchmarks/ is not a package)
from common import RESULTS, config_sha256  # noqa: E402


def test_every_run_row_says_where_it_came_from_and_none_silently_outlived_its_config():
    results = json.loads(RESULTS.read_text())
    tables = records.run_tables(results)
    assert {"bccd_runs", "synthetic_runs"} <= set(tables)
    for key, table in tables.items():
        for name, row in table.items():
            assert "provenance" in row, f"{key}.{name}: no provenance (python benchmarks/records.py marks it)"
            assert not records.stale_reason(row) or "stale" in row, (
                f"{key}.{name}: its config changed since it was measured: re-measure it or run "
                "python benchmarks/records.py to mark it stale"
            )
    assert "stale" in tables["bccd_runs"]["efficientnet_lite0"]  # bccd_lite0.yaml at 320 px, before 416 px
    shipped = "efficientnet_lite0_all_predictors_ignore_iou_416_40_epochs_mosaic_close10"  # the config now
    assert "stale" not in tables["bccd_runs"][shipped]


def test_a_config_hash_follows_the_file_and_the_arguments(tmp_path, monkeypatch):
    import common

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("model: {lr: 0.01}\n")
    monkeypatch.setattr(common, "ROOT", tmp_path)
    first = config_sha256("configs/a.yaml --seed_everything 1")
    assert first == config_sha256("configs/a.yaml --seed_everything 1")
    assert first != config_sha256("configs/a.yaml --seed_everything 2")
    (tmp_path / "configs" / "a.yaml").write_text("model: {lr: 0.02}\n")
    assert first != config_sha256("configs/a.yaml --seed_everything 1")
    assert config_sha256("--model.lr 0.1") is None
    row = {"train_args": "configs/a.yaml", "provenance": {"config_sha256": first}}
    assert "no longer matches" in records.stale_reason(row)


def test_the_gpu_benchmark_skips_in_one_line_without_cuda():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the benchmark would run")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [done.stdout.strip()] and done.stdout.startswith("skipped: no CUDA")
