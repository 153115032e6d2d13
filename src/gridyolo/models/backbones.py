"""Backbones behind one small constructor table: name -> (module, out_channels, stride, normalization).

Every backbone maps ``[N, 3, H, W]`` (normalized) to ``[N, out_channels, H / stride, W / stride]``
(ceil division for the TF-padded Lite0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import Tensor, nn

from gridyolo.errors import GridyoloError
from gridyolo.models.darknet import Darknet, darknet24, darknet_tiny
from gridyolo.models.efficientnet_lite import LITE0_STAGES, efficientnet_lite0, load_state_dict_file

LITE0_STRIDE16_STAGES = 5  # stages 1-5 of Lite0 end at stride 16 (the 5th, 112 channels, has stride 1)
LITE0_STRIDE16_BLOCKS = sum(stage[4] for stage in LITE0_STAGES[:LITE0_STRIDE16_STAGES])

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """A feature extractor and what the rest of the model needs to know about it."""

    module: nn.Module
    out_channels: int
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ResNetFeatures(nn.Module):
    """torchvision ResNet without its pooling and classifier."""

    def __init__(self, resnet: torchvision.models.ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class LiteFeatures(nn.Module):
    """EfficientNet-Lite0 up to its 1280-channel head convolution (stride 32), or, with ``stride=16``,
    up to its last stride-16 block (112 channels; the stride-32 stages and the head conv are dropped):
    a finer map for small objects at about half the FLOPs."""

    def __init__(self, weights: str | None, stride: int = 32) -> None:
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"EfficientNet-Lite0 features come at stride 16 or 32, not {stride}")
        self.net = efficientnet_lite0(weights, num_classes=0)
        self.full = stride == 32
        if not self.full:
            self.net._blocks = self.net._blocks[:LITE0_STRIDE16_BLOCKS]
            self.net._conv_head, self.net._bn1 = nn.Identity(), nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.full:
            return self.net.forward_features(x)
        net = self.net  # the blocks end in a linear projection: no activation after them
        return net._blocks(net.act(net._bn0(net._conv_stem(x))))


def _resnet(depth: int) -> Callable[[str | None], Backbone]:
    def build(weights: str | None) -> Backbone:
        name = f"resnet{depth}"
        model = getattr(torchvision.models, name)(weights=None)
        if weights == "imagenet":
            enum = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
            try:
                state = enum.get_state_dict(progress=False)
            except Exception as exc:  # offline: URLError / OSError
                raise GridyoloError(
                    f"cannot download {name} ImageNet weights ({exc.__class__.__name__}); "
                    "pass a local state_dict path as weights instead"
                ) from None
            model.load_state_dict(state)
        elif weights is not None:
            state = {k: v for k, v in load_state_dict_file(weights).items() if not k.startswith("fc.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith("fc.")]:
                raise GridyoloError(
                    f"{weights}: not a {name} state_dict (missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
        out = 2048 if depth >= 50 else 512
        return Backbone(ResNetFeatures(model), out, 32, IMAGENET_MEAN, IMAGENET_STD)

    return build


def _darknet(factory: Callable[[], nn.Module]) -> Callable[[str | None], Backbone]:
    def build(weights: str | None) -> Backbone:
        net = factory()
        if weights == "imagenet":
            raise GridyoloError(
                "no ImageNet weights are published for gridyolo's Darknet; train from scratch "
                "(weights: null) or pass a local state_dict path"
            )
        if weights is not None:
            net.load_state_dict(load_state_dict_file(weights))
        return Backbone(net, net.out_channels, net.stride, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    return build


def _lite0(stride: int) -> Callable[[str | None], Backbone]:
    def build(weights: str | None) -> Backbone:
        channels = 1280 if stride == 32 else LITE0_STAGES[LITE0_STRIDE16_STAGES - 1][3]
        return Backbone(LiteFeatures(weights, stride), channels, stride, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    return build


BACKBONES: dict[str, Callable[[str | None], Backbone]] = {
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "darknet": _darknet(darknet24),
    "darknet_tiny": _darknet(darknet_tiny),
    "efficientnet_lite0": _lite0(32),
    "efficientnet_lite0_s16": _lite0(16),
}


def backbone_stride(name: str) -> int:
    """The output stride of a backbone, without building it (32, or 16 for ``efficientnet_lite0_s16``)."""
    if name not in BACKBONES:
        raise GridyoloError(f"unknown backbone '{name}' (choose one of: {', '.join(BACKBONES)})")
    return 16 if name.endswith("_s16") else 32


def stem_layers(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's layers that run at stride <= 4 (edge and colour detectors, the most generic part).

    Freezing them is Detectron2's default for fine-tuning (``FREEZE_AT=2``: stem + res2); their backward
    pass is also the most expensive per FLOP, so freezing them speeds up CPU training.
    """
    if isinstance(backbone, ResNetFeatures):
        return [backbone.stem, backbone.layer1]
    if isinstance(backbone, LiteFeatures):
        net = backbone.net
        return [net._conv_stem, net._bn0, *list(net._blocks)[:3]]  # blocks 0-2 end at stride 4
    if isinstance(backbone, Darknet):
        layers, stride = [], 1
        for layer in backbone.layers:
            stride *= 2 if isinstance(layer, nn.MaxPool2d) else layer[0].stride[0]
            if stride > 4:
                break
            layers.append(layer)
        return layers
    raise GridyoloError(f"no stem defined for {backbone.__class__.__name__}")


def build_backbone(name: str, weights: str | None = None) -> Backbone:
    """Build a backbone by name; ``weights``: ``None`` (random init), ``"imagenet"`` or a state_dict path."""
    if name not in BACKBONES:
        raise GridyoloError(f"unknown backbone '{name}' (choose one of: {', '.join(BACKBONES)})")
    return BACKBONES[name](weights)
