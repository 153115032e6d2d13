"""The S×S grid head: backbone features -> raw grid ``(N, S, S, B*5 + C)``."""

from __future__ import annotations

import math

from torch import Tensor, nn


class GridHead(nn.Module):
    """Two 3×3 conv-BN-leaky layers around an adaptive average pool to S×S, then a 1×1 prediction conv.

    The pool makes the head work for any input size the backbone supports (it is the identity when the
    features are already S×S, e.g. Darknet-24 at 448 with S = 7). The confidence biases start at
    ``logit(0.01)`` so that the no-object term does not dominate the first steps (as RetinaNet's prior).

    ``forward``: ``[N, in_channels, h, w]`` -> ``[N, S, S, B*5 + C]`` (channels last, YOLOv1 layout).
    """

    def __init__(self, in_channels: int, grid_size: int, num_boxes: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.num_boxes = num_boxes
        self.num_classes = num_classes
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.LeakyReLU(0.1)
        )
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        self.mix = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.LeakyReLU(0.1)
        )
        self.predict = nn.Conv2d(channels, num_boxes * 5 + num_classes, 1)
        nn.init.normal_(self.predict.weight, std=0.01)
        nn.init.zeros_(self.predict.bias)
        conf_bias = self.predict.bias.data[: num_boxes * 5].view(num_boxes, 5)
        conf_bias[:, 4] = -math.log(99.0)

    def forward(self, features: Tensor) -> Tensor:
        x = self.mix(self.pool(self.reduce(features)))
        return self.predict(x).permute(0, 2, 3, 1).contiguous()
