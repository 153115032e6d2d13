"""detect's CPU default: ONNX Runtime for the model stage, checked against torch, cached by content."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnx", reason="onnx is not installed")

from gridyolo.apps.cli import main  # noqa: E402
from gridyolo.apps.detect import run_detect  # noqa: E402
from gridyolo.deploy import ort_backend  # noqa: E402
from gridyolo.deploy.export import export_info, export_onnx, export_torchscript  # noqa: E402
from gridyolo.deploy.predictor import load_predictor  # noqa: E402
from gridyolo.errors import GridyoloError  # noqa: E402
from train_helpers import write_checkpoint  # noqa: E402

NAMES = [f"class{i}" for i in range(20)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # darknet_tiny at 224: a 7x7 feature map, the S=7 grid (the head pool exports as the identity)
    return write_checkpoint(tmp_path_factory.mktemp("w") / "model.ckpt", NAMES, grid_size=7, input_size=224)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDYOLO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def images(tmp_path, coco128_root):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((coco128_root / "train2017").glob("*.jpg"))[:6]:
        (folder / path.name).symlink_to(path)
    return folder


def _records(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _assert_same_detections(a, b):
    """Same detections per image up to float noise (the random model's scores can tie to 1e-7, so the
    order of near-equal scores may differ): each box of one has a box of the same label within 1.5e-3 px."""
    assert sum(len(r["boxes"]) for r in a) > 10
    for x, y in zip(a, b, strict=True):
        assert x["source"] == y["source"] and sorted(x["labels"]) == sorted(y["labels"])
        if not x["boxes"]:
            continue
        gap = np.abs(np.asarray(x["boxes"])[:, None, :] - np.asarray(y["boxes"])[None, :, :]).max(-1)
        gap[np.asarray(x["labels"])[:, None] != np.asarray(y["labels"])[None, :]] = np.inf
        assert gap.min(axis=1).max() <= 1.5e-3  # records hold 3 decimals: one rounding step apart at most


def test_cpu_default_is_onnxruntime_with_torch_detections(checkpoint, images, tmp_path):
    fast = run_detect(str(checkpoint), str(images), str(tmp_path / "a"), device="cpu", save_json=True, progress=False)
    slow = run_detect(str(checkpoint), str(images), str(tmp_path / "b"), device="cpu", save_json=True,
                      progress=False, backend="torch")  # fmt: skip
    assert (fast["backend"], slow["backend"]) == ("onnxruntime", "torch")
    assert fast["warnings"] == [] and fast["images"] == 6
    _assert_same_detections(_records(tmp_path / "a"), _records(tmp_path / "b"))


def test_export_is_cached_by_checkpoint_content(checkpoint, tmp_path, cache):
    load_predictor(str(checkpoint))
    (first,) = (cache / "onnx").glob("*.onnx")
    stamp = first.stat().st_mtime_ns
    model = load_predictor(str(checkpoint))
    assert model.info["backend"] == "onnxruntime" and first.stat().st_mtime_ns == stamp  # reused, not re-exported
    changed = write_checkpoint(tmp_path / "model.ckpt", NAMES, grid_size=7, input_size=224, seed=1)
    other = load_predictor(str(changed))  # same file name, other weights: a new export
    assert len(list((cache / "onnx").glob("*.onnx"))) == 2
    batch = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8)
    assert not torch.allclose(model.predict_raw(batch), other.predict_raw(batch), atol=1e-2)


def test_onnx_file_as_weights_gives_the_same_records(checkpoint, images, tmp_path):
    onnx_file = tmp_path / "model.onnx"
    export_onnx(str(checkpoint), str(onnx_file))
    a = run_detect(str(onnx_file), str(images), str(tmp_path / "a"), device="cpu", save_json=True, progress=False)
    b = run_detect(str(checkpoint), str(images), str(tmp_path / "b"), device="cpu", save_json=True, progress=False)
    assert a["backend"] == b["backend"] == "onnxruntime"
    # the same graph; the decode around it is numpy for the file, torch for the checkpoint: rounding apart
    _assert_same_detections(_records(tmp_path / "a"), _records(tmp_path / "b"))
    assert export_info(str(onnx_file))["class_names"] == NAMES and export_info(str(onnx_file))["input_size"] == 224
    with pytest.raises(GridyoloError, match="exported for 224 px input"):
        load_predictor(str(onnx_file), img_size=320)


def test_mismatch_or_failed_export_falls_back_to_torch(checkpoint, tmp_path, monkeypatch, cache):
    tolerance = ort_backend.RAW_TOLERANCE
    monkeypatch.setattr(ort_backend, "RAW_TOLERANCE", -1.0)  # no gap is small enough
    info = load_predictor(str(checkpoint)).info
    assert info["backend"] == "torch" and "differs from the eager model" in info["notes"][0]
    assert list((cache / "onnx").glob("*.onnx")) == []  # a rejected export is not kept...
    monkeypatch.setattr(ort_backend, "RAW_TOLERANCE", tolerance)
    # ...its verdict is: later runs neither export nor compare again
    monkeypatch.setattr(ort_backend, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    info = load_predictor(str(checkpoint)).info
    assert info["backend"] == "torch" and "differs from the eager model" in info["notes"][0]
    with pytest.raises(GridyoloError, match="differs from the eager model"):
        load_predictor(str(checkpoint), backend="onnxruntime")
    monkeypatch.setattr(ort_backend, "export_onnx", export_onnx)
    # 160 px -> 5x5 features for a 7x7 grid: the adaptive pool upsamples, which has no fixed-size ONNX form
    odd = write_checkpoint(tmp_path / "odd.ckpt", NAMES, grid_size=7, input_size=160)
    info = load_predictor(str(odd)).info
    assert info["backend"] == "torch" and "ONNX export failed" in info["notes"][0]


def test_a_cache_hit_reads_neither_the_checkpoint_nor_the_eager_model(checkpoint, monkeypatch):
    load_predictor(str(checkpoint))  # exports and checks
    from gridyolo.deploy import export, torch_predictor
    from gridyolo.models import checkpoint as checkpoint_module

    def refuse(*args, **kwargs):
        raise AssertionError("read the checkpoint or built the eager model on a cache hit")

    for module, name in ((checkpoint_module, "load_checkpoint"), (torch_predictor, "load_checkpoint"),
                         (ort_backend, "inference_from_checkpoint"), (export, "detector_from_checkpoint")):  # fmt: skip
        monkeypatch.setattr(module, name, refuse)
    model = load_predictor(str(checkpoint))
    assert model.info["backend"] == "onnxruntime" and model.info["notes"] == []


@pytest.mark.parametrize(
    ("make", "backend", "message"),
    [("garbage", "auto", "not an ONNX model onnxruntime can load"),
     ("text", "auto", "not a weights file (a training checkpoint, a TorchScript, .pt2 or ONNX file)"),
     ("torchscript", "onnxruntime", "a TorchScript file runs with torch"),
     ("onnx", "torch", "an ONNX file runs with --backend onnxruntime")],
)  # fmt: skip
def test_bad_weights_and_backends_are_one_line_errors(checkpoint, images, tmp_path, capsys, make, backend, message):
    if make == "garbage":
        weights = tmp_path / "model.onnx"
        weights.write_bytes(b"\x08\x07 starts like an ONNX protobuf, is not one")
    elif make == "text":
        weights = tmp_path / "model.onnx"
        weights.write_bytes(b"not a protobuf")
    elif make == "torchscript":
        weights = tmp_path / "model.torchscript"
        export_torchscript(str(checkpoint), str(weights))
    else:
        weights = tmp_path / "model.onnx"
        export_onnx(str(checkpoint), str(weights))
    code = main(["detect", "--weights", str(weights), "--source", str(images), "--out", str(tmp_path / "o"),
                 "--backend", backend, "--device", "cpu", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"gridyolo: error: {weights}: {message}" in err and "Traceback" not in err
