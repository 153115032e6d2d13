"""Datasets: readers (COCO json, Pascal VOC, YOLO txt) into one Sample contract, transforms, loaders."""

from gridyolo.data.readers import build_reader
from gridyolo.data.sample import DatasetInfo, ImageRecord, Sample

__all__ = ["DatasetInfo", "ImageRecord", "Sample", "build_reader"]
