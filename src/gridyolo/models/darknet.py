"""Darknet backbones of YOLOv1: the 24-conv network and a 9-conv Fast-YOLO-style one.

Both use 1×1 reductions between 3×3 convolutions and leaky ReLU (slope 0.1) as in the paper, plus
BatchNorm after every convolution (YOLOv2's addition; it lets them train from scratch without the
paper's ImageNet pre-training schedule).
"""

from __future__ import annotations

from torch import Tensor, nn

# (kernel, out_channels, stride) or "M" for a 2×2 max-pool with stride 2.
DARKNET24 = [
    (7, 64, 2),
    "M",
    (3, 192, 1),
    "M",
    (1, 128, 1),
    (3, 256, 1),
    (1, 256, 1),
    (3, 512, 1),
    "M",
    *[(1, 256, 1), (3, 512, 1)] * 4,
    (1, 512, 1),
    (3, 1024, 1),
    "M",
    *[(1, 512, 1), (3, 1024, 1)] * 2,
    (3, 1024, 1),
    (3, 1024, 2),
    (3, 1024, 1),
    (3, 1024, 1),
]  # fmt: skip  -- 24 convolutions, stride 64: 448 -> 7×7×1024 as in the paper

DARKNET_TINY = [
    (3, 16, 1),
    "M",
    (3, 32, 1),
    "M",
    (3, 64, 1),
    "M",
    (3, 128, 1),
    "M",
    (3, 256, 1),
    "M",
    (3, 512, 1),
    (3, 1024, 1),
    (1, 256, 1),
    (3, 512, 1),
]  # fmt: skip  -- 9 convolutions, stride 32: 448 -> 14×14×512


def darknet_stride(layers: list) -> int:
    """The output stride of a layer list (without building it): the product of the conv strides and pools."""
    stride = 1
    for layer in layers:
        stride *= 2 if layer == "M" else layer[2]
    return stride


def conv_bn_leaky(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class Darknet(nn.Module):
    """A plain stack of conv-BN-leaky layers and max-pools. ``forward``: ``[N, 3, H, W]`` ->
    ``[N, out_channels, H / stride, W / stride]``."""

    def __init__(self, layers: list) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        channels, stride = 3, 1
        self.stride8_index, self.stride8_channels = -1, 0  # the last layer at stride 8 (a tap for the grid head)
        for layer in layers:
            if layer == "M":
                modules.append(nn.MaxPool2d(2, 2))
                stride *= 2
            else:
                kernel, out, s = layer
                modules.append(conv_bn_leaky(channels, out, kernel, s))
                channels, stride = out, stride * s
            if stride == 8:
                self.stride8_index, self.stride8_channels = len(modules) - 1, channels
        self.layers = nn.Sequential(*modules)
        self.out_channels = channels
        self.stride = stride

    def forward(self, x):
        return self.layers(x)


class DarknetLevels(Darknet):
    """``Darknet`` returning a list of maps, finest first: ``[stride-8 map, last map]`` with
    ``with_stride8``, else ``[last map]`` (the input of ``head.SpaceToDepthHead``)."""

    def __init__(self, layers: list, with_stride8: bool) -> None:
        super().__init__(layers)
        self.with_stride8 = with_stride8

    def forward(self, x: Tensor) -> list[Tensor]:
        fine = x
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.stride8_index:
                fine = x
        return [fine, x] if self.with_stride8 else [x]

