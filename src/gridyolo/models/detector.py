"""Detector = normalization + backbone + grid head. Knows nothing of Lightning; TorchScript-safe."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gridyolo.errors import GridyoloError
from gridyolo.models.backbones import build_backbone
from gridyolo.models.head import HEADS, GridHead, SpaceToDepthHead


class Detector(nn.Module):
    """``forward(images)``: ``[N, 3, H, W]`` RGB, ``uint8`` (0..255) or float (0..1) -> raw grid
    ``[N, S, S, B*5 + C]`` (see ``gridyolo.core.grid`` for what it means).

    Normalization (the backbone's mean / std) happens inside, so a batch travels to the device as
    ``uint8`` and exported models need no separate pre-processing constants.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: GridHead | SpaceToDepthHead,
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
    head: str = "pool",
    input_size: int | None = None,
) -> Detector:
    """Build a detector.

    Args:
        backbone: a name of ``gridyolo.models.backbones.BACKBONES``.
        num_classes, grid_size, num_boxes: C, S, B.
        weights: backbone weights: ``None`` (random init), ``"imagenet"`` or a local state_dict path.
        head_channels: width of the grid head.
        head: ``pool`` (``GridHead``: any input size), ``space_to_depth`` (``SpaceToDepthHead`` on the
            last map) or ``space_to_depth_s8`` (on the stride-8 and the last map).
        input_size: the square input the space-to-depth heads are built for (each map's side must be a
            multiple of S); unused by ``pool``.
    """
    if head not in HEADS:
        raise GridyoloError(f"unknown head '{head}' (choose one of: {', '.join(HEADS)})")
    if head == "pool":
        bb = build_backbone(backbone, weights)
        grid_head = GridHead(bb.out_channels, grid_size, num_boxes, num_classes, head_channels)
        return Detector(bb.module, grid_head, bb.mean, bb.std, backbone)
    if input_size is None:
        raise GridyoloError(f"head '{head}' is built for one input size: give input_size")
    bb = build_backbone(backbone, weights, levels=2 if head.endswith("_s8") else 1)
    factors = []
    for stride in bb.level_strides:
        side = -(-input_size // stride)  # ceil: Lite0's TF-SAME padding
        if side % grid_size:
            raise GridyoloError(
                f"head {head}: the stride-{stride} map of a {input_size} px input is {side}x{side}, not a multiple "
                f"of the {grid_size}x{grid_size} grid; choose input_size a multiple of {stride * grid_size}"
            )
        factors.append(side // grid_size)
    grid_head = SpaceToDepthHead(list(bb.level_channels), factors, grid_size, num_boxes, num_classes, head_channels)
    return Detector(bb.module, grid_head, bb.mean, bb.std, backbone)


def check_head_input_size(head: str, built_for: int, size: int) -> None:
    """The space-to-depth heads take the one input size they were built for (the pool head any)."""
    if head != "pool" and size != built_for:
        raise GridyoloError(f"--img-size {size}: this model's {head} head is built for {built_for} px input")
