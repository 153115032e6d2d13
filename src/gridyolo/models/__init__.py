"""Models: backbones (ResNet, Darknet, EfficientNet-Lite0), the grid head and the ``Detector``
(``uint8 [N, 3, H, W]`` -> raw grid ``[N, S, S, B*5 + C]``, normalization inside)."""

from gridyolo.models.backbones import BACKBONES, backbone_stride, build_backbone, stem_layers
from gridyolo.models.detector import Detector, build_detector
from gridyolo.models.head import GridHead

__all__ = ["BACKBONES", "backbone_stride", "Detector", "GridHead", "build_backbone", "build_detector", "stem_layers"]
