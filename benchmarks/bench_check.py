"""``data check`` with every image decoded: coco128, and a synthetic 20k-image COCO set (QUICK: 5k),
cold (no cache) and warm (the per-file cache keyed by size and mtime), as the whole library call
(reader + decode + report), each a median of 3 rounds.

    python benchmarks/bench_check.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from common import DATA, QUICK, record

from gridyolo.data.dataset_report import dataset_report
from gridyolo.data.readers import build_reader


def synthetic_coco(root: Path, count: int) -> Path:
    """``count`` JPEGs of 320x240 (smooth gradients and a rectangle: a realistic JPEG size, ~8 KB)."""
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 320, dtype=np.float32)[None, :, None] * np.ones((240, 1, 3), np.float32)
    images, annotations = [], []
    for i in range(count):
        image = (base * rng.uniform(0.3, 1.0, 3)).astype(np.uint8)
        x, y = int(rng.integers(0, 200)), int(rng.integers(0, 150))
        cv2.rectangle(image, (x, y), (x + 80, y + 60), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(root / "train" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i + 1, "file_name": name, "width": 320, "height": 240})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, 80, 60],
                            "area": 4800, "iscrowd": 0})  # fmt: skip
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return root


def timed(root: str, split: str, cold: bool) -> float:
    if cold:
        for path in Path(os.environ["GRIDYOLO_CACHE"]).rglob("*.json"):
            path.unlink()
    start = time.perf_counter()
    report = dataset_report(build_reader(root, "coco", split))
    assert report["ok"], report["image_problems"][:3]
    return time.perf_counter() - start


def main() -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GRIDYOLO_CACHE"] = str(Path(tmp) / "cache")
        count = 5000 if QUICK else 20000
        start = time.perf_counter()
        synthetic = synthetic_coco(Path(tmp) / "synthetic", count)
        print(f"wrote {count} synthetic images in {time.perf_counter() - start:.0f} s")
        sets = {"coco128": (str(DATA / "coco128"), "train2017"), f"synthetic_{count}": (str(synthetic), "train")}
        for name, (root, split) in sets.items():
            for mode in ("cold", "warm"):
                seconds = statistics.median(timed(root, split, mode == "cold") for _ in range(3))
                rows[f"{name}_{mode}_s"] = round(seconds, 3)
                print(f"{name:16s} {mode}: {seconds:.2f} s")
    key = f"synthetic_{count}"
    record(
        "data_check_s",
        {"coco128_cold": rows["coco128_cold_s"], f"{key}_cold": rows[f"{key}_cold_s"],
         f"{key}_warm": rows[f"{key}_warm_s"]},  # fmt: skip
        "python benchmarks/bench_check.py",
        detail_s=rows,
        threads=os.cpu_count(),
        note="reader + decode every image + report; warm = per-file cache hit (stat only)",
    )
    return rows


if __name__ == "__main__":
    main()
