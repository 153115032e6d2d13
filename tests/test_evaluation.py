"""COCO mAP: pycocotools and faster-coco-eval agree; crowd / difficult handling; VOC AP by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gridyolo.data.sample import ImageRecord
from gridyolo.evaluation import coco_ground_truth, coco_results, evaluate_coco, voc_ap


def _jittered_predictions(reader, seed=0, miss=0.15, extra=0.3):
    """Predictions around real ground truth: shifted boxes, random scores, misses, false positives,
    some wrong labels."""
    rng = np.random.default_rng(seed)
    detections = {}
    for record in reader.records:
        keep = rng.random(len(record.labels)) > miss
        boxes = record.boxes[keep].copy()
        size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
        boxes += rng.normal(0, 0.08, boxes.shape) * size
        labels = record.labels[keep].copy()
        flip = rng.random(len(labels)) < 0.1
        labels[flip] = rng.integers(0, reader.info.num_classes, int(flip.sum()))
        n_fp = rng.poisson(extra * max(1, len(labels)))
        xy = rng.random((n_fp, 2)) * [record.width, record.height]
        wh = rng.random((n_fp, 2)) * [record.width, record.height] / 3
        boxes = np.concatenate([boxes, np.concatenate([xy, xy + wh], axis=1)])
        labels = np.concatenate([labels, rng.integers(0, reader.info.num_classes, n_fp)])
        detections[record.image_id] = {"boxes": boxes, "scores": rng.random(len(labels)), "labels": labels}
    return detections


def test_pycocotools_and_faster_coco_eval_agree_on_coco128(coco128_reader):
    pytest.importorskip("faster_coco_eval")
    gt = coco_ground_truth(coco128_reader)
    results = coco_results(_jittered_predictions(coco128_reader), coco128_reader.info.category_ids)
    reference = evaluate_coco(gt, results, backend="pycocotools")
    fast = evaluate_coco(gt, results, backend="faster_coco_eval")
    assert 0.2 < reference["map"] < 0.9  # a non-trivial operating point
    for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large", "mar_100"):
        assert fast[key] == pytest.approx(reference[key], abs=1e-12), key
    for name, ap in reference["per_class"].items():
        assert fast["per_class"][name] == pytest.approx(ap, abs=1e-12), name


def test_results_use_original_category_ids_and_xywh(coco128_reader):
    record = coco128_reader.records[0]
    results = coco_results(
        {record.image_id: {"boxes": record.boxes, "scores": np.ones(len(record.labels)), "labels": record.labels}},
        coco128_reader.info.category_ids,
    )
    gt = coco_ground_truth(coco128_reader)
    gt_anns = [a for a in gt["annotations"] if a["image_id"] == record.image_id and not a["iscrowd"]]
    assert sorted(r["category_id"] for r in results) == sorted(a["category_id"] for a in gt_anns)
    for r in results:
        assert any(np.allclose(r["bbox"], a["bbox"], atol=1e-3) for a in gt_anns)


def test_perfect_detections_score_one_and_crowd_is_ignored(coco128_reader):
    detections = {
        r.image_id: {
            "boxes": np.concatenate([r.boxes, r.crowd_boxes]),
            "scores": np.ones(len(r.labels) + len(r.crowd_labels)),
            "labels": np.concatenate([r.labels, r.crowd_labels]),
        }
        for r in coco128_reader.records
    }
    metrics = evaluate_coco(
        coco_ground_truth(coco128_reader),
        coco_results(detections, coco128_reader.info.category_ids),
        backend="pycocotools",
    )
    # detections on crowd regions are neither false positives nor matches: AP stays exactly 1
    assert metrics["map"] == pytest.approx(1.0) and metrics["map50"] == pytest.approx(1.0)
    assert sum(1 for v in metrics["per_class"].values() if v == -1) == 80 - 71


def test_no_detections_is_zero_not_a_crash(bccd_reader):
    metrics = evaluate_coco(coco_ground_truth(bccd_reader), [], backend="pycocotools")
    assert metrics["map"] == 0.0 and set(metrics["per_class"]) == {"RBC", "WBC", "Platelets"}


def _record(boxes, labels, difficult=None, image_id=0):
    labels = np.array(labels, dtype=np.int64)
    return ImageRecord(
        "x.jpg",
        image_id,
        100,
        100,
        np.array(boxes, np.float32),
        labels,
        difficult=np.array(difficult if difficult is not None else [False] * len(labels)),
    )


def test_voc_ap_by_hand():
    records = [_record([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    dets = {
        0: {
            "boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]]),
            "scores": np.array([0.9, 0.8, 0.7]),
            "labels": np.array([0, 0, 0]),
        }
    }
    # PR points: (r=.5, p=1), (r=.5, p=.5), (r=1, p=2/3)
    area = voc_ap(records, dets, ["a"], use_07_metric=False)
    assert area["per_class"]["a"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    eleven = voc_ap(records, dets, ["a"], use_07_metric=True)
    assert eleven["per_class"]["a"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_voc_difficult_is_ignored():
    records = [_record([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], difficult=[False, True])]
    hit_difficult = {
        0: {
            "boxes": np.array([[20, 20, 30, 30], [0, 0, 10, 10]]),
            "scores": np.array([0.9, 0.8]),
            "labels": np.array([0, 0]),
        }
    }
    assert voc_ap(records, hit_difficult, ["a"], use_07_metric=False)["map"] == pytest.approx(1.0)
    miss_difficult = {0: {"boxes": np.array([[0, 0, 10, 10]]), "scores": np.array([0.9]), "labels": np.array([0])}}
    assert voc_ap(records, miss_difficult, ["a"], use_07_metric=False)["map"] == pytest.approx(1.0)


def test_voc_difficult_becomes_crowd_in_coco_ground_truth(bccd_reader):
    gt = coco_ground_truth(bccd_reader)
    assert len(gt["images"]) == 292 and len(gt["annotations"]) == 3941
    assert {c["name"] for c in gt["categories"]} == {"RBC", "WBC", "Platelets"}
