"""Tiny real datasets and configs for training tests (bccd images, a few of them, small inputs)."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import BCCD, copy_voc_subset


def tiny_bccd(dest: Path, count: int = 8, start: int = 0) -> Path:
    ids = [f"BloodImage_{i:05d}" for i in range(start, start + count)]
    return copy_voc_subset(BCCD, dest, ids)


def tiny_config(path: Path, root: Path, **overrides) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "deterministic": True, "log_every_n_steps": 1,
                    "enable_progress_bar": False},
        "model": {"backbone": "darknet_tiny", "grid_size": 4, "head_channels": 32, "lr": 0.01, "warmup_epochs": 0.5},
        "data": {"root": str(root), "format": "voc", "train_split": "train", "val_split": "train",
                 "classes": ["RBC", "WBC", "Platelets"], "input_size": 128, "batch_size": 4, "num_workers": 0},
    }  # fmt: skip
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        config[section][key] = value
    path.write_text(yaml.safe_dump(config))
    return path


def write_checkpoint(
    path: Path,
    class_names: list[str],
    backbone: str = "darknet_tiny",
    grid_size: int = 4,
    input_size: int = 128,
    resize_mode: str = "letterbox",
    seed: int = 0,
    head_channels: int = 32,
    head: str = "pool",
) -> Path:
    """A gridyolo checkpoint with random weights (no training): what detect / export / explain read.

    The prediction layer is re-drawn with a large spread so that confidences and classes vary from cell
    to cell and there are many overlapping candidates for NMS to sort out.
    """
    import torch

    from gridyolo.models import build_detector
    from gridyolo.models.checkpoint import ModelMeta

    torch.manual_seed(seed)
    model = build_detector(backbone, len(class_names), grid_size, 2, None, head_channels, head, input_size).eval()
    torch.nn.init.normal_(model.head.predict.weight, std=0.3)
    torch.nn.init.normal_(model.head.predict.bias, std=1.0)
    torch.nn.init.normal_(model.head.predict.bias[10:], std=4.0)  # peaked class distributions: scores > 0.25
    meta = ModelMeta(backbone, grid_size, 2, head_channels, list(class_names), list(range(1, len(class_names) + 1)),
                     input_size, resize_mode, model.mean.flatten().tolist(), model.std.flatten().tolist(),
                     head=head)  # fmt: skip
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"gridyolo": meta.to_dict(), "state_dict": state}, path)
    return path
