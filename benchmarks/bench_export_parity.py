"""How far a TorchScript export's own resize (torch's bilinear) moves its detections and its mAP from
its checkpoint's OpenCV letterbox; the ONNX and .pt2 exports for comparison (they use OpenCV's).

    python benchmarks/bench_export_parity.py   # the coco128 large-object model of bench_accuracy.py

Needs ``runs/bench/bench_s4/weights/best.ckpt`` (``bench_accuracy.py --dataset coco128_large``) or
``--weights CKPT --data ROOT --format F --split S``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import ROOT, record

from gridyolo.apps.cli import main as gridyolo
from gridyolo.data.readers import build_reader
from gridyolo.deploy.predictor import load_predictor


def evaluate(weights: str, args: argparse.Namespace) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gridyolo(["eval", "--weights", weights, "--data", args.data, "--format", args.format, "--split", args.split,
                  "--json", "--backend", "pycocotools"])  # fmt: skip
    return json.loads(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(ROOT / "runs/bench/bench_s4/weights/best.ckpt"))
    parser.add_argument("--data", default=str(ROOT / "runs/bench/coco128_large"))
    parser.add_argument("--format", default="coco")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    if not Path(args.weights).is_file():
        sys.exit(f"needs {args.weights} (python benchmarks/bench_accuracy.py --dataset coco128_large)")
    with tempfile.TemporaryDirectory() as work:
        exports = {"torchscript": f"{work}/m.torchscript", "onnx": f"{work}/m.onnx", "pt2": f"{work}/m.pt2"}
        for fmt, path in exports.items():
            gridyolo(["export", "--weights", args.weights, "--format", fmt, "--out", path, "--no-aoti"])
        scores = {name: evaluate(path, args) for name, path in {"checkpoint": args.weights, **exports}.items()}
        # each checkpoint box scoring >= 0.1 is matched to the nearest same-class export box scoring >= 0.05,
        # so that a box near the threshold in one is not missing in the other
        reference = load_predictor(args.weights, backend="torch", conf_threshold=0.1, channels_last=False)
        names = reference.class_names
        readers = [build_reader(args.data, args.format, split, classes=names) for split in ("train", args.split)]
        gaps: dict[str, list[float]] = {fmt: [] for fmt in exports}
        levels = 0
        for fmt, path in exports.items():
            predictor = load_predictor(path, conf_threshold=0.05)
            for reader in readers:
                for i in range(len(reader)):
                    image = reader[i].image
                    if fmt == "torchscript":
                        a, b = reference.preprocess_arrays([image])[0], predictor.preprocess_arrays([image])[0]
                        levels = max(levels, int((a.int() - b.int()).abs().max()))
                    chw = torch.from_numpy(image).permute(2, 0, 1)
                    (mine,), (theirs,) = predictor([chw]), reference([chw])
                    mine = {k: torch.as_tensor(v) for k, v in mine.items()}
                    if len(mine["boxes"]) and len(theirs["boxes"]):
                        gap = (theirs["boxes"][:, None] - mine["boxes"][None]).abs().amax(-1)
                        gap[theirs["labels"][:, None] != mine["labels"][None]] = float("inf")
                        gaps[fmt].extend(v for v in gap.min(1).values.tolist() if v != float("inf"))
    result = {"grey_levels_torchscript_input": levels}
    for fmt in exports:
        values = np.array(gaps[fmt])
        result[fmt] = {"map_delta": round(scores[fmt]["map"] - scores["checkpoint"]["map"], 6),
                       "map50_delta": round(scores[fmt]["map50"] - scores["checkpoint"]["map50"], 6),
                       "boxes_px_median": round(float(np.median(values)), 4), "boxes_px_p95":
                       round(float(np.percentile(values, 95)), 4), "boxes_px_max": round(float(values.max()), 4),
                       "matched_boxes": int(values.size)}  # fmt: skip
        print(f"{fmt:12s} mAP {scores[fmt]['map']:.4f} (checkpoint {scores['checkpoint']['map']:.4f}); boxes vs the "
              f"checkpoint: median {result[fmt]['boxes_px_median']} px, p95 {result[fmt]['boxes_px_p95']}, max "
              f"{result[fmt]['boxes_px_max']} ({values.size} boxes)")  # fmt: skip
    print(f"TorchScript input vs the OpenCV letterbox: at most {levels} grey level(s)")
    record("export_parity", result["torchscript"]["map_delta"], "python benchmarks/bench_export_parity.py",
           detail=result)


if __name__ == "__main__":
    main()
