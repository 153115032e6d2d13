"""Detector = normalization + backbone + grid head. Knows nothing of Lightning; TorchScript-safe."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gridyolo.models.backbones import build_backbone
from gridyolo.models.head import GridHead


class Detector(nn.Module):
    """``forward(images)``: ``[N, 3, H, W]`` RGB, ``uint8`` (0..255) or float (0..1) -> raw grid
    ``[N, S, S, B*5 + C]`` (see ``gridyolo.core.grid`` for what it means).

    Normalization (the backbone's mean / std) happens inside, so a batch travels to the device as
    ``uint8`` and exported models need no separate pre-processing constants.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: GridHead,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        backbone_name: str = "",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.backbone_name = backbone_name
        self.grid_size = head.grid_size
        self.num_boxes = head.num_boxes
        self.num_classes = head.num_classes

    def normalize(self, images: Tensor) -> Tensor:
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(self.normalize(images)))


def build_detector(
    backbone: str = "resnet18",
    num_classes: int = 20,
    grid_size: int = 7,
    num_boxes: int = 2,
    weights: str | None = None,
    head_channels: int = 256,
) -> Detector:
    """Build a detector.

    Args:
        backbone: a name of ``gridyolo.models.backbones.BACKBONES``.
        num_classes, grid_size, num_boxes: C, S, B.
        weights: backbone weights: ``None`` (random init), ``"imagenet"`` or a local state_dict path.
        head_channels: width of the grid head.
    """
    bb = build_backbone(backbone, weights)
    head = GridHead(bb.out_channels, grid_size, num_boxes, num_classes, head_channels)
    return Detector(bb.module, head, bb.mean, bb.std, backbone)
