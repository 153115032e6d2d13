"""Backbones, grid head and Detector: shapes for any S/B/C and input size, TorchScript, weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision

from gridyolo.errors import GridyoloError
from gridyolo.models import BACKBONES, backbone_stride, build_backbone, build_detector
from gridyolo.models.efficientnet_lite import efficientnet_lite0


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_gives_the_grid_and_scripts(name):
    model = build_detector(name, num_classes=5, grid_size=7, num_boxes=2).eval()
    images = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        raw = model(images)
        assert raw.shape == (2, 7, 7, 2 * 5 + 5)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(images), raw, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_the_stride_known_by_name_is_the_built_backbones(name):
    """``backbone_stride`` (what input checks use before a model exists) is the built ``Backbone.stride``
    and what its output really is (Darknet-24: 64, not 32)."""
    backbone = build_backbone(name)
    assert backbone_stride(name) == backbone.stride
    with torch.no_grad():
        out = backbone.module.eval()(torch.zeros(1, 3, 128, 128))
    assert 128 // out.shape[-1] == backbone.stride


@pytest.mark.parametrize("size, grid, boxes, classes", [(320, 10, 3, 80), (448, 14, 2, 20), (256, 4, 1, 1)])
def test_head_follows_config(size, grid, boxes, classes):
    model = build_detector("darknet_tiny", num_classes=classes, grid_size=grid, num_boxes=boxes).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, grid, grid, boxes * 5 + classes)


def test_uint8_and_float_inputs_agree():
    model = build_detector("darknet_tiny", num_classes=3).eval()
    images = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images.float() / 255))


def test_initial_confidence_is_low():
    model = build_detector("darknet_tiny", num_classes=3).eval()
    with torch.no_grad():
        conf = model(torch.rand(1, 3, 224, 224))[..., [4, 9]].sigmoid()
    assert conf.mean() < 0.05


def test_lite0_imagenet_weights_name_a_real_image(coco128_root):
    """The offline ImageNet weights: a coco128 photo of a zebra is a 'zebra' for the Lite0 classifier."""
    model = efficientnet_lite0("imagenet", num_classes=1000).eval()
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # the 1000 names, offline
    image = cv2.cvtColor(cv2.imread(str(coco128_root / "train2017" / "000000000034.jpg")), cv2.COLOR_BGR2RGB)
    x = (cv2.resize(image, (224, 224)).astype(np.float32) / 255 - 0.5) / 0.5
    with torch.no_grad():
        probs = model(torch.from_numpy(x).permute(2, 0, 1)[None]).softmax(1)[0]
    assert categories[int(probs.argmax())] == "zebra" and probs.max() > 0.5


def test_lite0_detector_loads_imagenet_backbone():
    detector = build_detector("efficientnet_lite0", num_classes=3, weights="imagenet")
    reference = efficientnet_lite0("imagenet")
    torch.testing.assert_close(
        detector.backbone.net._blocks[3]._depthwise_conv.weight, reference._blocks[3]._depthwise_conv.weight
    )


def test_lite0_stride16_is_the_imagenet_network_cut_before_its_stride32_stages():
    backbone = build_backbone("efficientnet_lite0_s16", "imagenet")
    full = efficientnet_lite0("imagenet").eval()
    kept = len(backbone.module.net._blocks)
    assert full._blocks[kept]._depthwise_conv.stride == (2, 2)  # the next block would go to stride 32
    captured = {}
    full._blocks[kept - 1].register_forward_hook(lambda m, i, o: captured.update(out=o))
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        full.forward_features(x)
        out = backbone.module.eval()(x)
    assert (backbone.stride, backbone.out_channels) == (16, 112) and out.shape == (1, 112, 10, 10)
    torch.testing.assert_close(out, captured["out"])  # no activation added after the linear projection
    assert not any("_conv_head" in name for name, _ in backbone.module.named_parameters())


def test_resnet_weights_from_local_state_dict(tmp_path):
    source = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    backbone = build_backbone("resnet18", str(path))
    torch.testing.assert_close(backbone.module.layer3[0].conv1.weight, source.layer3[0].conv1.weight)


def test_bad_weights_and_names_are_clear_errors(tmp_path):
    with pytest.raises(GridyoloError, match="unknown backbone 'resnet7'"):
        build_backbone("resnet7")
    with pytest.raises(GridyoloError, match=r"missing\.pth: weights file not found"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(GridyoloError, match=r"junk\.pth: cannot load weights"):
        build_backbone("darknet_tiny", str(tmp_path / "junk.pth"))
    with pytest.raises(GridyoloError, match="no ImageNet weights"):
        build_backbone("darknet", "imagenet")


def test_darknet24_is_the_paper_network():
    backbone = build_backbone("darknet")
    convs = [m for m in backbone.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 24 and backbone.stride == 64 and backbone.out_channels == 1024
    assert sum(c.kernel_size == (1, 1) for c in convs) == 9  # the 1x1 reduction layers
    leaky = [m for m in backbone.module.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(leaky) == 24 and all(m.negative_slope == 0.1 for m in leaky)
    tiny = [m for m in build_backbone("darknet_tiny").module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(tiny) == 9
