"""Decode: exact round trip on real targets (checked by pycocotools), thresholds, caps, batching."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gridyolo.core.decode import decode_grid
from gridyolo.core.grid import encode_raw
from gridyolo.core.letterbox import EvalTransform, boxes_to_original
from gridyolo.data.dataset import DetectionDataset

SIZE = 448


def _keep_lonely_objects(targets, grid_size):
    """Targets restricted to the objects whose centre cell holds no other object of their image."""
    out = []
    for t in targets:
        centres = (t["boxes"][:, :2] + t["boxes"][:, 2:]) / 2 / SIZE * grid_size
        cells = centres.floor().clamp(0, grid_size - 1).long()
        key = cells[:, 1] * grid_size + cells[:, 0]
        lonely = torch.bincount(key, minlength=grid_size * grid_size)[key] == 1
        out.append({**t, "boxes": t["boxes"][lonely], "labels": t["labels"][lonely]})
    return out


def _coco_ap(ground_truth, detections):
    """pycocotools (AP, AP50): ``ground_truth`` a list of ``(boxes, labels)`` per image, xyxy pixels."""
    images, annotations, results = [], [], []
    for image_id, ((boxes, labels), det) in enumerate(zip(ground_truth, detections)):
        images.append({"id": image_id})
        for box, label in zip(boxes.tolist(), labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": label + 1,
                    "score": score,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                }
            )
    num_classes = max(int(labels.max()) for _, labels in ground_truth if len(labels)) + 1
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[0], evaluator.stats[1]


@pytest.mark.parametrize("which, grid_size", [("coco128", 14), ("bccd", 14), ("bccd", 7)])
def test_round_trip_on_real_targets(which, grid_size, request):
    """Ground truth -> perfect raw grid -> decode gives the boxes back in original pixels.

    NMS is set not to suppress (IoU 0.99): overlapping real objects (dense bccd cells) are not
    duplicates, and the perfect grid has a single confident predictor per object.
    """
    reader = request.getfixturevalue(f"{which}_reader")
    dataset = DetectionDataset(reader, EvalTransform(SIZE))
    targets = _keep_lonely_objects([dataset[i][1] for i in range(0, len(dataset), 3)], grid_size)
    raw = encode_raw(targets, (SIZE, SIZE), grid_size, 2, reader.info.num_classes)
    detections = decode_grid(
        raw,
        2,
        (SIZE, SIZE),
        letterbox=torch.stack([t["letterbox"] for t in targets]),
        orig_sizes=torch.stack([t["orig_size"] for t in targets]),
        conf_threshold=0.5,
        iou_threshold=0.99,
        max_detections=300,
    )
    ground_truth = []
    for target, det in zip(targets, detections):
        boxes = torch.from_numpy(boxes_to_original(target["boxes"].numpy(), target["letterbox"].numpy()))
        ground_truth.append((boxes, target["labels"]))
        assert len(det["boxes"]) == len(boxes)  # nothing missing, nothing extra
        order = torch.argsort(det["boxes"][:, 0] * 1e4 + det["boxes"][:, 1])
        expected = torch.argsort(boxes[:, 0] * 1e4 + boxes[:, 1])
        torch.testing.assert_close(det["boxes"][order], boxes[expected], atol=2e-2, rtol=0)
        assert torch.equal(det["labels"][order], target["labels"][expected])
    assert sum(len(b) for b, _ in ground_truth) > 100
    ap, ap50 = _coco_ap(ground_truth, detections)
    assert ap == pytest.approx(1.0) and ap50 == pytest.approx(1.0)
    # the boxes also match the reader's original annotations (not only their letterboxed copy)
    first = reader.records[[r.image_id for r in reader.records].index(int(targets[0]["image_id"]))]
    for box in ground_truth[0][0].numpy():
        assert np.abs(first.boxes - box).max(axis=1).min() < 1e-3


def test_threshold_cap_and_score_definition():
    torch.manual_seed(0)
    raw = torch.randn(3, 7, 7, 2 * 5 + 4)
    dets = decode_grid(raw, 2, (448, 448), conf_threshold=0.0, iou_threshold=1.0, max_detections=50)
    assert [len(d["scores"]) for d in dets] == [50, 50, 50]
    for d in dets:
        assert (d["scores"][:-1] >= d["scores"][1:]).all()  # highest first
    conf = raw[..., [4, 9]].sigmoid()
    prob = raw[..., 10:].softmax(-1)
    best = (conf.unsqueeze(-1) * prob.unsqueeze(3)).reshape(3, -1).max(dim=1).values
    assert torch.allclose(torch.stack([d["scores"][0] for d in dets]), best)
    strict = decode_grid(raw, 2, (448, 448), conf_threshold=0.3)
    assert all((d["scores"] > 0.3).all() for d in strict)


def test_batched_decode_equals_one_image_at_a_time():
    torch.manual_seed(1)
    raw = torch.randn(4, 7, 7, 2 * 5 + 3) * 3
    params = torch.tensor([[0.7, 0.7, 0.0, 56.0]] * 4)
    sizes = torch.tensor([[480, 640]] * 4)
    batched = decode_grid(raw, 2, (448, 448), params, sizes, conf_threshold=0.05)
    for i in range(4):
        single = decode_grid(raw[i : i + 1], 2, (448, 448), params[i : i + 1], sizes[i : i + 1], conf_threshold=0.05)[0]
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(batched[i][key], single[key])
    assert all((d["boxes"][:, 2] <= 640).all() and (d["boxes"][:, 3] <= 480).all() for d in batched)


def test_nms_is_per_class():
    targets = [{"boxes": torch.tensor([[100.0, 100.0, 200.0, 200.0]]), "labels": torch.tensor([0])}]
    raw = encode_raw(targets, (448, 448), 7, 2, 2)
    raw[0, 2, 2, 10:12] = 0.0  # both classes equally likely: 0.5 each
    dets = decode_grid(raw, 2, (448, 448), conf_threshold=0.1)[0]
    assert sorted(dets["labels"].tolist()) == [0, 1]  # same box, two classes: both kept
    np.testing.assert_allclose(dets["scores"].numpy(), [0.5, 0.5], atol=1e-5)
