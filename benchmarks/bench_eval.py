"""The gridyolo eval metric path on 5,000 images with ~500,000 detections: pycocotools vs faster-coco-eval.

Ground truth: coco128's real boxes and classes, repeated to 5,000 images. Predictions: 100 per image,
jittered copies of the ground truth (some missed) plus random false positives, scores random.

    python benchmarks/bench_eval.py
"""

from __future__ import annotations

import copy
import time

import numpy as np
from common import DATA, record

from gridyolo.data import build_reader
from gridyolo.evaluation import coco_ground_truth, evaluate_coco


def synthetic_eval_set(num_images: int = 5000, per_image: int = 100, seed: int = 0) -> tuple[dict, list[dict]]:
    reader = build_reader(str(DATA / "coco128"), "coco", "train2017")
    base = coco_ground_truth(reader)
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    by_image: dict[int, list[dict]] = {}
    for ann in base["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    sources = base["images"]
    for new_id in range(1, num_images + 1):
        src = sources[(new_id - 1) % len(sources)]
        images.append({**src, "id": new_id})
        anns = by_image.get(src["id"], [])
        for ann in anns:
            annotations.append({**copy.deepcopy(ann), "id": len(annotations) + 1, "image_id": new_id})
        dets = []
        for ann in anns:
            if rng.random() < 0.8:
                x, y, w, h = ann["bbox"]
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                dets.append((ann["category_id"], [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)]))
        cats = [c["id"] for c in base["categories"]]
        while len(dets) < per_image:
            w, h = rng.uniform(10, 200, 2)
            dets.append(
                (int(rng.choice(cats)), [rng.uniform(0, src["width"] - w), rng.uniform(0, src["height"] - h), w, h])
            )
        for cat, box in dets[:per_image]:
            results.append(
                {"image_id": new_id, "category_id": cat, "bbox": [float(v) for v in box], "score": float(rng.random())}
            )
    return {**base, "images": images, "annotations": annotations}, results


def main() -> dict:
    num_images = 5000
    ground_truth, results = synthetic_eval_set(num_images)
    print(f"{len(ground_truth['images'])} images, {len(ground_truth['annotations'])} boxes, {len(results)} detections")
    seconds, metrics = {}, {}
    for backend in ("faster_coco_eval", "pycocotools"):
        start = time.perf_counter()
        metrics[backend] = evaluate_coco(ground_truth, results, backend=backend)
        seconds[backend] = round(time.perf_counter() - start, 2)
        m = metrics[backend]
        print(f"{backend:17s} {seconds[backend]:7.2f} s  map {m['map']:.6f}  map50 {m['map50']:.6f}")
    same = all(
        abs(metrics["pycocotools"][k] - metrics["faster_coco_eval"][k]) < 1e-6 for k in ("map", "map50", "map75")
    )
    record(
        "cocoeval_s",
        seconds,
        "python benchmarks/bench_eval.py",
        images=num_images,
        detections=len(results),
        same_numbers=same,
        map={k: metrics[k]["map"] for k in metrics},
    )
    return seconds


if __name__ == "__main__":
    main()
