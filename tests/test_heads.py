"""The space-to-depth grid heads: the head contract (N, S, S, B*5 + C) for every backbone, gradients into
every level, the one input size they are built for, and exact parity of their exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gridyolo.core.loss import YoloV1Loss
from gridyolo.data.images import load_image
from gridyolo.deploy.export import export_onnx, export_torchscript, inference_from_checkpoint, load_torchscript
from gridyolo.deploy.predictor import load_predictor
from gridyolo.errors import GridyoloError
from gridyolo.models import BACKBONES, GridHead, SpaceToDepthHead, build_detector
from train_helpers import write_checkpoint

S2D_HEADS = ["space_to_depth", "space_to_depth_s8"]


@pytest.mark.parametrize("head", S2D_HEADS)
@pytest.mark.parametrize("backbone", [b for b in BACKBONES if b not in ("darknet", "resnet50")])  # the two large ones
def test_every_backbone_gives_the_grid_and_scripts(backbone, head):
    size = 256  # stride-8, -16 and -32 maps of 32, 16 and 8: all divide into S=4
    model = build_detector(backbone, num_classes=3, grid_size=4, num_boxes=2, head_channels=32, head=head,
                           input_size=size).eval()  # fmt: skip
    assert isinstance(model.head, SpaceToDepthHead) and len(model.head.factors) == (2 if head.endswith("s8") else 1)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        raw = model(images)
        assert raw.shape == (2, 4, 4, 2 * 5 + 3)
        torch.testing.assert_close(torch.jit.script(model)(images), raw, rtol=0, atol=0)


def test_the_cell_sees_where_its_features_are():
    """The pool head gives one output for any arrangement of the features inside a cell; space-to-depth
    tells them apart (the point of the head: boxes regressed from where in the cell things are)."""
    torch.manual_seed(0)
    pool = GridHead(8, 2, 1, 1, 8).eval()
    s2d = SpaceToDepthHead([8], [2], 2, 1, 1, 16).eval()
    torch.nn.init.normal_(s2d.predict.weight)
    torch.nn.init.normal_(pool.predict.weight)
    x = torch.zeros(1, 8, 4, 4)
    x[0, :, 0, 0] = 1.0  # a feature in the top-left position of the top-left cell ...
    moved = torch.zeros(1, 8, 4, 4)
    moved[0, :, 1, 1] = 1.0  # ... and the same feature at the bottom-right of that cell
    with torch.no_grad():
        pool.reduce = torch.nn.Identity()  # the 3x3 conv would see the move; the pool alone must not
        pool.mix = torch.nn.Identity()
        assert torch.allclose(pool(x), pool(moved))
        assert not torch.allclose(s2d([x]), s2d([moved]), atol=1e-3)


@pytest.mark.parametrize("head", S2D_HEADS)
def test_gradients_reach_every_level_and_the_backbone(head):
    torch.manual_seed(0)
    model = build_detector("efficientnet_lite0_s16", 3, 4, 2, None, 32, head, 128).train()
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[70.0, 5.0, 120.0, 40.0]]), "labels": torch.tensor([2])}]  # fmt: skip
    loss_fn = YoloV1Loss(4, 2, 3, box_loss="sse+ciou", conf_loss="bce", class_loss="ce")
    loss = loss_fn(model(images), targets, (128, 128))
    loss["total"].backward()
    for lateral in model.head.lateral:
        grad = lateral[0].weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    stem = model.backbone.net._conv_stem.weight.grad
    assert stem is not None and torch.isfinite(stem).all() and stem.abs().sum() > 0


def test_input_sizes_that_do_not_divide_are_one_line_errors():
    with pytest.raises(GridyoloError, match=r"stride-16 map of a 160 px input is 10x10.*multiple of 64"):
        build_detector("efficientnet_lite0_s16", 3, 4, 2, None, 32, "space_to_depth", 160)
    with pytest.raises(GridyoloError, match=r"stride-8 map of a 96 px input is 12x12.*multiple of 40"):
        build_detector("efficientnet_lite0_s16", 3, 5, 2, None, 32, "space_to_depth_s8", 96)
    with pytest.raises(GridyoloError, match="give input_size"):
        build_detector("darknet_tiny", 3, 4, 2, None, 32, "space_to_depth")
    with pytest.raises(GridyoloError, match="unknown head 'avg'"):
        build_detector("darknet_tiny", 3, 4, 2, None, 32, "avg", 128)
    model = build_detector("darknet_tiny", 3, 4, 2, None, 32, "space_to_depth", 128).eval()
    with pytest.raises(AssertionError, match="built for"), torch.no_grad():
        model(torch.zeros(1, 3, 256, 256, dtype=torch.uint8))


@pytest.fixture(scope="module", params=S2D_HEADS)
def s2d_checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    names = [f"class{i}" for i in range(5)]
    return write_checkpoint(folder / "model.ckpt", names, backbone="efficientnet_lite0_s16", grid_size=4,
                            input_size=128, head=request.param)  # fmt: skip


def _images(coco128_root, count=4):
    paths = sorted((coco128_root / "train2017").glob("*.jpg"))[:count]
    return [torch.from_numpy(load_image(str(p))).permute(2, 0, 1).contiguous() for p in paths]


def test_exports_of_a_space_to_depth_model_give_its_detections(s2d_checkpoint, coco128_root, tmp_path):
    """TorchScript: the eager pipeline's detections on real images; ONNX Runtime: its raw grid."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (a dependency of gridyolo)")
    from gridyolo.deploy.onnx_runner import OnnxDetector

    images = _images(coco128_root)
    eager, _ = inference_from_checkpoint(str(s2d_checkpoint), conf_threshold=0.05, max_detections=1000)
    scripted_path = tmp_path / "model.torchscript"
    export_torchscript(str(s2d_checkpoint), str(scripted_path), conf_threshold=0.05, max_detections=1000)
    scripted, info = load_torchscript(str(scripted_path))
    assert info["head"] in S2D_HEADS
    with torch.no_grad():
        expected, got = eager(images), scripted(images)
    assert sum(len(e["boxes"]) for e in expected) > 5  # the comparison is not vacuous
    for e, g in zip(expected, got):
        assert torch.equal(e["labels"], g["labels"]) and torch.allclose(e["boxes"], g["boxes"], atol=1e-3, rtol=0)
    onnx_path = tmp_path / "model.onnx"
    export_onnx(str(s2d_checkpoint), str(onnx_path))
    batch, _, _ = eager.preprocess(images)
    with torch.no_grad():
        raw = eager.predict_raw(batch).numpy()
    assert np.allclose(OnnxDetector(str(onnx_path)).raw(batch.numpy()), raw, atol=1e-4)
    assert load_predictor(str(onnx_path)).info["head"] in S2D_HEADS


def test_another_input_size_is_refused_in_one_line(s2d_checkpoint, tmp_path):
    with pytest.raises(GridyoloError, match="head is built for 128 px input"):
        load_predictor(str(s2d_checkpoint), backend="torch", img_size=256)
    with pytest.raises(GridyoloError, match="head is built for 128 px input"):
        export_onnx(str(s2d_checkpoint), str(tmp_path / "m.onnx"), img_size=256)


def test_a_run_with_the_s8_head_trains_records_and_reloads_it(bccd_root, tmp_path, capsys):
    """`--model.head space_to_depth_s8` through `gridyolo train`: the checkpoint carries the head, detect /
    eval rebuild it; an input size the head cannot divide is one line, exit 2, before any run folder."""
    from gridyolo.apps.cli import main
    from gridyolo.models.checkpoint import detector_from_checkpoint
    from train_helpers import tiny_bccd, tiny_config

    root = tiny_bccd(tmp_path / "bccd", count=4)
    config = tiny_config(tmp_path / "tiny.yaml", root, trainer__max_epochs=1, model__head="space_to_depth_s8")
    project = tmp_path / "runs"
    assert main(["train", "--config", str(config), "--project", str(project)]) == 0
    model, meta = detector_from_checkpoint(str(project / "exp" / "weights" / "best.ckpt"))
    assert meta.head == "space_to_depth_s8" and isinstance(model.head, SpaceToDepthHead)
    assert main(["eval", "--weights", str(project / "exp" / "weights" / "best.ckpt"), "--data", str(root),
                 "--format", "voc", "--split", "train", "--classes", "RBC,WBC,Platelets", "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    code = main(["train", "--config", str(config), "--project", str(project), "--name", "bad",
                 "--data.input_size", "160"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "a multiple of 128" in err[0], err
    assert not (project / "bad").exists()


def test_summary_describes_a_space_to_depth_config_and_refuses_another_size(tmp_path, capsys):
    """`gridyolo summary --config` builds the config's head (its parameters are the head's, not the pool's)."""
    import json

    from gridyolo.apps.cli import main

    config = tmp_path / "s2d.yaml"
    model = {"backbone": "darknet_tiny", "grid_size": 4, "head_channels": 32}
    data = {"format": "voc", "classes": ["a", "b"], "input_size": 128}
    counts = {}
    for head in ("pool", "space_to_depth_s8"):
        config.write_text(json.dumps({"model": {**model, "head": head}, "data": data}))  # JSON is YAML
        assert main(["summary", "--config", str(config), "--json"]) == 0
        counts[head] = json.loads(capsys.readouterr().out)["params"]
    assert counts["pool"] != counts["space_to_depth_s8"]
    assert main(["summary", "--config", str(config), "--img-size", "256"]) == 2
    assert "built for 128 px input" in capsys.readouterr().err
