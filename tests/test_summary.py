"""``gridyolo summary``: per-layer rows add up to PyTorch's totals; shapes and receptive fields."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from gridyolo.apps.summary import format_summary, model_summary
from gridyolo.models import build_detector


def test_cli_summary_resnet18_json():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridyolo.apps.cli",
            "summary",
            "--backbone",
            "resnet18",
            "--img-size",
            "448",
            "--grid",
            "7",
            "--boxes",
            "2",
            "--classes",
            "20",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["output_shape"] == [1, 7, 7, 30]
    model = build_detector("resnet18", num_classes=20, grid_size=7, num_boxes=2).eval()
    assert summary["params"] == sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 448, 448))
    assert summary["flops"] == counter.get_total_flops()
    assert sum(r["params"] for r in summary["layers"]) == summary["params"]
    assert sum(r["flops"] for r in summary["layers"]) == summary["flops"]


def test_conv_rows_follow_the_output_size_formula():
    summary = model_summary(build_detector("darknet", num_classes=20), 448)
    convs = [r for r in summary["layers"] if r["type"] == "Conv2d"]
    first = convs[0]  # 7x7/2, pad 3 on 448: (448 - 7 + 2*3) / 2 + 1 = 224
    assert first["output_shape"] == [1, 64, 224, 224] and first["params"] == 7 * 7 * 3 * 64
    assert first["flops"] == 2 * 7 * 7 * 3 * 64 * 224 * 224
    backbone_out = [r for r in summary["layers"] if r["name"].startswith("backbone.")][-1]
    assert backbone_out["output_shape"][1:] == [1024, 7, 7]


def test_receptive_field_of_resnet18():
    summary = model_summary(build_detector("resnet18"), 224)
    layer4 = [r for r in summary["layers"] if r["name"].startswith("backbone.layer4")][-1]
    assert layer4["receptive_field"] == 435 and layer4["jump"] == 32  # the known value for ResNet-18
    text = format_summary(summary)
    assert "backbone.layer4.1.conv2" in text and "GFLOPs" in text
