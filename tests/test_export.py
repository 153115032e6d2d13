"""TorchScript export: parity with the eager model on real images, loading with torch + torchvision only,
metadata, pre-processing consistent with training's letterbox, ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gridyolo.apps.cli import main
from gridyolo.core.letterbox import letterbox
from gridyolo.data.images import load_image
from gridyolo.deploy.export import (
    export_info,
    export_torchscript,
    fresh_process_parity,
    inference_from_checkpoint,
    load_torchscript,
)
from train_helpers import write_checkpoint

COCO_NAMES = [f"class{i}" for i in range(80)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, coco128_root):
    folder = tmp_path_factory.mktemp("export")
    ckpt = write_checkpoint(folder / "model.ckpt", COCO_NAMES, grid_size=7, input_size=224)
    out = folder / "model.torchscript"
    export_torchscript(str(ckpt), str(out), conf_threshold=0.05)
    images = [load_image(str(p)) for p in sorted((coco128_root / "train2017").glob("*.jpg"))[:6]]
    return ckpt, out, [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]


def test_torchscript_equals_eager_on_real_images(exported):
    ckpt, out, images = exported
    eager, _ = inference_from_checkpoint(str(ckpt), conf_threshold=0.05)
    scripted, info = load_torchscript(str(out))
    assert {tuple(im.shape[1:]) for im in images} != {tuple(images[0].shape[1:])}  # several sizes
    with torch.no_grad():
        expected, got = eager(images), scripted(images)
    total = 0
    for e, g in zip(expected, got):
        assert torch.equal(e["labels"], g["labels"])  # same labels, same order
        assert torch.allclose(e["boxes"], g["boxes"], atol=1e-3, rtol=0)
        assert torch.allclose(e["scores"], g["scores"], atol=1e-6)
        total += len(e["boxes"])
    assert total > 20  # the comparison is not vacuous
    assert info["class_names"] == COCO_NAMES and info["input_size"] == 224


def test_loads_in_a_process_with_only_torch_and_torchvision(exported, tmp_path):
    ckpt, out, images = exported
    eager, _ = inference_from_checkpoint(str(ckpt), conf_threshold=0.05)
    expected = eager(images[:3])
    report = fresh_process_parity(str(out), images[:3], expected, str(tmp_path))
    assert report["gridyolo_imported"] is False and report["class_names"] == COCO_NAMES
    assert report["same_labels"] and report["max_box_diff"] <= 1e-3 and report["detections"] > 5


def test_preprocess_matches_the_training_letterbox(exported):
    """The exported resize (torch bilinear) and training's (OpenCV INTER_LINEAR) agree to rounding."""
    ckpt, _, images = exported
    eager, _ = inference_from_checkpoint(str(ckpt))
    batch, params, sizes = eager.preprocess(images)
    for i, image in enumerate(images):
        reference, ref_params = letterbox(image.permute(1, 2, 0).numpy(), 224, "letterbox")
        diff = np.abs(batch[i].permute(1, 2, 0).numpy().astype(int) - reference.astype(int))
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2
        assert np.allclose(params[i].numpy(), ref_params, atol=1e-6)
        assert sizes[i].tolist() == [float(image.shape[1]), float(image.shape[2])]


def test_export_cli_and_info(exported, tmp_path, capsys):
    ckpt, _, _ = exported
    out = tmp_path / "cli.torchscript"
    assert main(["export", "--weights", str(ckpt), "--out", str(out), "--img-size", "160"]) == 0
    assert main(["export", "--info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "input_size       160" in printed and "classes          80: class0, class1" in printed
    assert export_info(str(out))["grid_size"] == 7


def test_export_bad_inputs_are_one_line(tmp_path, capsys):
    not_ts = tmp_path / "notes.txt"
    not_ts.write_text("hello")
    assert main(["export", "--info", str(not_ts)]) == 2
    assert main(["export", "--weights", str(tmp_path / "missing.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gridyolo: error: {not_ts}: not a weights file (a training checkpoint, a TorchScript, .pt2 or ONNX file)",  # noqa: E501
                   f"gridyolo: error: {tmp_path / 'missing.ckpt'}: weights file not found"]  # fmt: skip


def test_onnx_runtime_matches_torch(exported, tmp_path):
    pytest.importorskip("onnx", reason="onnx/onnxruntime not installed (dependencies of gridyolo)")
    pytest.importorskip("onnxruntime", reason="onnx/onnxruntime not installed (dependencies of gridyolo)")
    from gridyolo.deploy.export import export_onnx
    from gridyolo.deploy.onnx_runner import OnnxDetector

    ckpt, _, images = exported
    out = Path(tmp_path / "model.onnx")
    export_onnx(str(ckpt), str(out))
    runner = OnnxDetector(str(out), conf_threshold=0.05, max_detections=1000)  # no cap: near-ties cannot
    eager, _ = inference_from_checkpoint(str(ckpt), conf_threshold=0.05, max_detections=1000)  # swap at the cut
    batch, params, sizes = eager.preprocess(images)
    with torch.no_grad():
        raw = eager.predict_raw(batch).numpy()
    assert np.allclose(runner.raw(batch.numpy()), raw, atol=1e-4)
    expected = eager.postprocess(torch.from_numpy(raw), params, sizes)
    got = runner.decode(raw, params.numpy(), sizes.numpy())
    for e, g in zip(expected, got):
        # the same detections; scores of this random model tie to 1e-7, so the two sorts may order them
        # differently: every eager detection must have a runner detection of its label within 1e-3 px
        assert len(e["labels"]) == len(g["labels"]) > 5
        assert sorted(e["labels"].tolist()) == sorted(g["labels"].tolist())
        gap = np.abs(e["boxes"].numpy()[:, None, :] - g["boxes"][None, :, :]).max(-1)
        gap[e["labels"].numpy()[:, None] != g["labels"][None, :]] = np.inf
        assert gap.min(axis=1).max() <= 1e-3
