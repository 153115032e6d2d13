"""What ``export --info`` prints; no torch here, so the torch-free ONNX path can use it. What a weights
file is: ``gridyolo.weights_kind``; the decode settings in force: ``core.decode_settings``."""

from __future__ import annotations

from typing import Any


def format_info(info: dict[str, Any]) -> str:
    """``gridyolo export --info``: an export's metadata as aligned lines."""
    keys = ("format", "program", "gridyolo_version", "torch_version", "backbone", "head", "input_size", "resize_mode",
            "grid_size", "num_boxes", "mean", "std", "conf_threshold", "iou_threshold", "max_detections")  # fmt: skip
    lines = [f"{k:16s} {info[k]}" for k in keys if k in info]
    names = info.get("class_names", [])
    lines.append(f"{'classes':16s} {len(names)}: {', '.join(names)}")
    return "\n".join(lines)
