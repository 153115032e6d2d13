"""Models: backbones (ResNet, Darknet, EfficientNet-Lite0), the grid head and the Detector."""

from gridyolo.models.backbones import BACKBONES, backbone_stride, build_backbone, stem_layers
from gridyolo.models.detector import Detector, build_detector
from gridyolo.models.head import GridHead

__all__ = ["BACKBONES", "backbone_stride", "Detector", "GridHead", "build_backbone", "build_detector", "stem_layers"]
