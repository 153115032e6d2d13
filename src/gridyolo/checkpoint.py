"""What a checkpoint carries for detect / eval / export, and how to rebuild the model from it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from gridyolo import __version__
from gridyolo.errors import GridyoloError
from gridyolo.models import Detector, build_detector


@dataclass
class ModelMeta:
    """Everything needed to rebuild and use a trained detector without its dataset."""

    backbone: str
    grid_size: int
    num_boxes: int
    head_channels: int
    class_names: list[str]
    category_ids: list[int]
    input_size: int
    resize_mode: str
    mean: list[float]
    std: list[float]
    version: str = __version__

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return asdict(self)


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise GridyoloError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or not a checkpoint
        raise GridyoloError(f"{path}: cannot read checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(checkpoint, dict) or "gridyolo" not in checkpoint:
        raise GridyoloError(f"{path}: not a gridyolo checkpoint (no 'gridyolo' metadata)")
    return checkpoint


def detector_from_checkpoint(path: str, use_ema: bool = True) -> tuple[Detector, ModelMeta]:
    """Rebuild the Detector of a training checkpoint (EMA weights when present) in eval mode."""
    checkpoint = load_checkpoint(path)
    meta = ModelMeta(**checkpoint["gridyolo"])
    model = build_detector(meta.backbone, meta.num_classes, meta.grid_size, meta.num_boxes, None, meta.head_channels)
    state = checkpoint["state_dict"]
    prefix = "ema.module." if use_ema and any(k.startswith("ema.module.") for k in state) else "model."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    model.load_state_dict(weights)
    return model.eval(), meta
