"""Models: backbones (ResNet, Darknet, EfficientNet-Lite0), the grid head and the ``Detector``
(``uint8 [N, 3, H, W]`` -> raw grid ``[N, S, S, B*5 + C]``, normalization inside)."""

from gridyolo.models.backbones import BACKBONES, backbone_stride, build_backbone, stem_layers
from gridyolo.models.detector import Detector, build_detector, check_head_input_size
from gridyolo.models.head import HEADS, GridHead, SpaceToDepthHead

__all__ = ["BACKBONES", "HEADS", "backbone_stride", "Detector", "GridHead", "SpaceToDepthHead", "build_backbone",
           "build_detector", "check_head_input_size", "stem_layers"]
