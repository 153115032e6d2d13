"""Backbones behind one small constructor table: name -> (module, out_channels, stride, normalization).

Every backbone maps ``[N, 3, H, W]`` (normalized) to ``[N, out_channels, H / stride, W / stride]``
(ceil division for the TF-padded Lite0). Built with ``levels=1`` or ``2`` it returns a list of maps
instead, finest first: ``[last map]`` or ``[stride-8 map, last map]`` (``Backbone.level_channels`` /
``level_strides`` say what each is), the input of the space-to-depth grid heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import Tensor, nn

from gridyolo.errors import GridyoloError
from gridyolo.models.darknet import DARKNET24, DARKNET_TINY, Darknet, DarknetLevels, darknet_stride
from gridyolo.models.efficientnet_lite import LITE0_STAGES, efficientnet_lite0, load_state_dict_file

LITE0_STRIDE16_STAGES = 5  # stages 1-5 of Lite0 end at stride 16 (the 5th, 112 channels, has stride 1)
LITE0_STRIDE16_BLOCKS = sum(stage[4] for stage in LITE0_STAGES[:LITE0_STRIDE16_STAGES])
LITE0_STRIDE8_BLOCKS = sum(stage[4] for stage in LITE0_STAGES[:3])  # stages 1-3 end at stride 8 (40 channels)
LITE0_STRIDE4_BLOCKS = sum(stage[4] for stage in LITE0_STAGES[:2])  # stages 1-2 end at stride 4 (24 channels)

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
    level_channels: tuple[int, ...] = ()  # with levels: the channels of each map returned, finest first
    level_strides: tuple[int, ...] = ()


class ResNetFeatures(nn.Module):
    """torchvision ResNet without its pooling and classifier."""

    def __init__(self, resnet: torchvision.models.ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class ResNetLevels(ResNetFeatures):
    """``ResNetFeatures`` returning ``[layer2 (stride 8), layer4]`` with ``with_stride8``, else ``[layer4]``."""

    def __init__(self, resnet: torchvision.models.ResNet, with_stride8: bool) -> None:
        super().__init__(resnet)
        self.with_stride8 = with_stride8

    def forward(self, x: Tensor) -> list[Tensor]:
        fine = self.layer2(self.layer1(self.stem(x)))
        last = self.layer4(self.layer3(fine))
        return [fine, last] if self.with_stride8 else [last]


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


class LiteLevels(LiteFeatures):
    """``LiteFeatures`` returning ``[stride-8 map (40 channels), last map]`` with ``with_stride8``,
    else ``[last map]``."""

    def __init__(self, weights: str | None, stride: int, with_stride8: bool) -> None:
        super().__init__(weights, stride)
        self.with_stride8 = with_stride8
        self.stride8_index = LITE0_STRIDE8_BLOCKS - 1

    def forward(self, x: Tensor) -> list[Tensor]:
        net = self.net
        x = net.act(net._bn0(net._conv_stem(x)))
        fine = x
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i == self.stride8_index:
                fine = x
        if self.full:
            x = net.act(net._bn1(net._conv_head(x)))
        return [fine, x] if self.with_stride8 else [x]


def _levels(levels: int, fine: tuple[int, int], last: tuple[int, int]) -> dict:
    """``Backbone`` fields of a list output: (channels, stride) of the stride-8 map and of the last map."""
    chosen = [fine, last] if levels == 2 else [last]
    return {"level_channels": tuple(c for c, _ in chosen), "level_strides": tuple(s for _, s in chosen)}


def _resnet(depth: int) -> Callable[[str | None, int], Backbone]:
    def build(weights: str | None, levels: int = 0) -> Backbone:
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
        out, stride = (2048 if depth >= 50 else 512), BACKBONE_STRIDES[name]
        if not levels:
            return Backbone(ResNetFeatures(model), out, stride, IMAGENET_MEAN, IMAGENET_STD)
        module = ResNetLevels(model, levels == 2)
        return Backbone(module, out, stride, IMAGENET_MEAN, IMAGENET_STD,
                        **_levels(levels, (out // 4, 8), (out, stride)))  # fmt: skip

    return build


def _darknet(layers: list) -> Callable[[str | None, int], Backbone]:
    def build(weights: str | None, levels: int = 0) -> Backbone:
        net = DarknetLevels(layers, levels == 2) if levels else Darknet(layers)
        if weights == "imagenet":
            raise GridyoloError(
                "no ImageNet weights are published for gridyolo's Darknet; train from scratch "
                "(weights: null) or pass a local state_dict path"
            )
        if weights is not None:
            net.load_state_dict(load_state_dict_file(weights))
        fields = _levels(levels, (net.stride8_channels, 8), (net.out_channels, net.stride)) if levels else {}
        return Backbone(net, net.out_channels, net.stride, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), **fields)

    return build


def _lite0(stride: int) -> Callable[[str | None, int], Backbone]:
    def build(weights: str | None, levels: int = 0) -> Backbone:
        channels = 1280 if stride == 32 else LITE0_STAGES[LITE0_STRIDE16_STAGES - 1][3]
        norm = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        if not levels:
            return Backbone(LiteFeatures(weights, stride), channels, stride, *norm)
        fine = (LITE0_STAGES[2][3], 8)
        return Backbone(LiteLevels(weights, stride, levels == 2), channels, stride, *norm,
                        **_levels(levels, fine, (channels, stride)))  # fmt: skip

    return build


BACKBONES: dict[str, Callable[[str | None, int], Backbone]] = {
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "darknet": _darknet(DARKNET24),
    "darknet_tiny": _darknet(DARKNET_TINY),
    "efficientnet_lite0": _lite0(32),
    "efficientnet_lite0_s16": _lite0(16),
}


# Output stride of each backbone, from the same definitions its constructor builds from (a test checks
# every built ``Backbone.stride`` and its real output size against it).
BACKBONE_STRIDES: dict[str, int] = {
    "resnet18": 32, "resnet34": 32, "resnet50": 32,
    "darknet": darknet_stride(DARKNET24), "darknet_tiny": darknet_stride(DARKNET_TINY),
    "efficientnet_lite0": 32, "efficientnet_lite0_s16": 16,
}  # fmt: skip


def backbone_stride(name: str) -> int:
    """The output stride of a backbone, without building it (Darknet-24 64, Lite0 stride-16 cut 16, else 32)."""
    if name not in BACKBONES:
        raise GridyoloError(f"unknown backbone '{name}' (choose one of: {', '.join(BACKBONES)})")
    return BACKBONE_STRIDES[name]


def stem_layers(backbone: nn.Module, max_stride: int = 4) -> list[nn.Module]:
    """The backbone's layers that run at stride <= ``max_stride`` (4 or 8), the most generic part.

    Freezing the stride-4 ones is Detectron2's default for fine-tuning (``FREEZE_AT=2``: stem + res2),
    stride 8 its ``FREEZE_AT=3`` (+ res3); their backward pass over the largest maps is also the most
    expensive per FLOP, so freezing them speeds up CPU training.
    """
    if max_stride not in (4, 8):
        raise ValueError(f"the frozen stem ends at stride 4 or 8, not {max_stride}")
    if isinstance(backbone, ResNetFeatures):
        return [backbone.stem, backbone.layer1] + ([backbone.layer2] if max_stride == 8 else [])
    if isinstance(backbone, LiteFeatures):
        net = backbone.net
        blocks = LITE0_STRIDE8_BLOCKS if max_stride == 8 else LITE0_STRIDE4_BLOCKS
        return [net._conv_stem, net._bn0, *list(net._blocks)[:blocks]]
    if isinstance(backbone, Darknet):
        layers, stride = [], 1
        for layer in backbone.layers:
            stride *= 2 if isinstance(layer, nn.MaxPool2d) else layer[0].stride[0]
            if stride > max_stride:
                break
            layers.append(layer)
        return layers
    raise GridyoloError(f"no stem defined for {backbone.__class__.__name__}")


def build_backbone(name: str, weights: str | None = None, levels: int = 0) -> Backbone:
    """Build a backbone by name; ``weights``: ``None`` (random init), ``"imagenet"`` or a state_dict path;
    ``levels``: 0 returns the last map, 1 ``[last map]``, 2 ``[stride-8 map, last map]``."""
    if name not in BACKBONES:
        raise GridyoloError(f"unknown backbone '{name}' (choose one of: {', '.join(BACKBONES)})")
    if levels not in (0, 1, 2):
        raise ValueError(f"levels is 0, 1 or 2, not {levels}")
    return BACKBONES[name](weights, levels)
