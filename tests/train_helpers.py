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
