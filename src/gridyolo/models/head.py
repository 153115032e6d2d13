"""Grid heads: backbone features -> raw grid ``(N, S, S, B*5 + C)``.

``GridHead`` (``head: pool``, YOLOv1's way) averages the feature map down to S×S; the space-to-depth
heads (``head: space_to_depth`` / ``space_to_depth_s8``) keep every position of a cell in the channels,
so a box is regressed from where in its cell each feature was (and, with ``_s8``, from the stride-8
map too), while cells still own objects at the coarse S. Both end in the same prediction conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEADS = ("pool", "space_to_depth", "space_to_depth_s8")


def _conv_bn_leaky(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1),
    )


def _prediction_conv(channels: int, num_boxes: int, num_classes: int) -> nn.Conv2d:
    """1×1 conv to ``B*5 + C``; small weights, confidence biases at ``logit(0.01)`` so that the no-object
    term does not dominate the first steps (as RetinaNet's prior)."""
    predict = nn.Conv2d(channels, num_boxes * 5 + num_classes, 1)
    nn.init.normal_(predict.weight, std=0.01)
    nn.init.zeros_(predict.bias)
    conf_bias = predict.bias.data[: num_boxes * 5].view(num_boxes, 5)
    conf_bias[:, 4] = -math.log(99.0)
    return predict


class GridHead(nn.Module):
    """Two 3×3 conv-BN-leaky layers around an adaptive average pool to S×S, then a 1×1 prediction conv.

    The pool makes the head work for any input size the backbone supports (it is the identity when the
    features are already S×S, e.g. Darknet-24 at 448 with S = 7).

    ``forward``: ``[N, in_channels, h, w]`` -> ``[N, S, S, B*5 + C]`` (channels last, YOLOv1 layout).
    """

    def __init__(self, in_channels: int, grid_size: int, num_boxes: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.num_boxes = num_boxes
        self.num_classes = num_classes
        self.reduce = _conv_bn_leaky(in_channels, channels, 3)
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        self.mix = _conv_bn_leaky(channels, channels, 3)
        self.predict = _prediction_conv(channels, num_boxes, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        x = self.mix(self.pool(self.reduce(features)))
        return self.predict(x).permute(0, 2, 3, 1).contiguous()


class SpaceToDepthHead(nn.Module):
    """No averaging between features and grid: each level's k×k positions per cell become channels.

    Level ``l`` is a backbone map of ``k_l·S × k_l·S``. A 3×3 conv-BN-leaky brings it to
    ``m_l = max(16, channels // k_l²)`` channels at its own resolution, then ``pixel_unshuffle(k_l)``
    puts the k_l × k_l positions of each cell side by side: ``[N, m_l·k_l², S, S]``. The levels are
    concatenated, a 1×1 conv-BN-leaky fuses them to ``channels``, then the 3×3 mix and the prediction
    conv of ``GridHead``. The k_l are fixed when the head is built, so the model takes the one input
    size it was built for (``build_detector`` checks it; ``forward`` asserts it).

    ``forward``: a list of ``[N, C_l, k_l·S, k_l·S]`` maps, finest first -> ``[N, S, S, B*5 + C]``.
    """

    def __init__(
        self,
        level_channels: list[int],
        level_factors: list[int],
        grid_size: int,
        num_boxes: int,
        num_classes: int,
        channels: int = 256,
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.num_boxes = num_boxes
        self.num_classes = num_classes
        self.factors = list(level_factors)
        widths = [max(16, channels // (k * k)) for k in level_factors]
        self.lateral = nn.ModuleList(_conv_bn_leaky(c, m, 3) for c, m in zip(level_channels, widths))
        self.fuse = _conv_bn_leaky(sum(m * k * k for m, k in zip(widths, level_factors)), channels, 1)
        self.mix = _conv_bn_leaky(channels, channels, 3)
        self.predict = _prediction_conv(channels, num_boxes, num_classes)

    def forward(self, features: list[Tensor]) -> Tensor:
        parts: list[Tensor] = []
        for i, lateral in enumerate(self.lateral):
            k = self.factors[i]
            x = lateral(features[i])
            torch._assert(
                x.shape[-2] == k * self.grid_size and x.shape[-1] == k * self.grid_size,
                "space_to_depth head: the input size differs from the one the model was built for",
            )
            parts.append(F.pixel_unshuffle(x, k))
        x = self.mix(self.fuse(torch.cat(parts, dim=1)))
        return self.predict(x).permute(0, 2, 3, 1).contiguous()
