"""Datasets: readers (COCO json, Pascal VOC, YOLO txt) into one ``Sample`` contract, ``data check`` and
``data convert``, the torch dataset and, for training only, albumentations augmentation
(``transforms``) and the Lightning data module (``datamodule``)."""

from gridyolo.data.readers import build_reader
from gridyolo.data.sample import DatasetInfo, ImageRecord, Sample

__all__ = ["DatasetInfo", "ImageRecord", "Sample", "build_reader"]
