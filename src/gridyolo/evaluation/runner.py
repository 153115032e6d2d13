"""``gridyolo eval``: a checkpoint's detections on a dataset split, scored by COCO (and VOC) metrics."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from gridyolo.checkpoint import ModelMeta, detector_from_checkpoint
from gridyolo.data.base import DetectionReader
from gridyolo.data.dataset import DetectionDataset, collate_detections
from gridyolo.data.readers import build_reader
from gridyolo.data.transforms import EvalTransform
from gridyolo.decode import decode_targets_batch
from gridyolo.errors import GridyoloError
from gridyolo.evaluation.coco_metrics import coco_ground_truth, coco_results, evaluate_coco
from gridyolo.evaluation.voc_ap import voc_ap
from gridyolo.models import Detector


@torch.no_grad()
def predict_reader(
    model: Detector,
    meta: ModelMeta,
    reader: DetectionReader,
    batch_size: int = 16,
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    device: str = "cpu",
    num_workers: int = 0,
) -> dict[int, dict[str, torch.Tensor]]:
    """``{image_id: {boxes xyxy original px, scores, labels}}`` for every image of ``reader``."""
    loader = DataLoader(
        DetectionDataset(reader, EvalTransform(meta.input_size, meta.resize_mode)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_detections,
    )
    model = model.to(device).eval()
    predictions = {}
    for images, targets in loader:
        raw = model(images.to(device))
        detections = decode_targets_batch(
            raw, meta.num_boxes, tuple(images.shape[-2:]), targets, conf_threshold, iou_threshold, max_detections
        )
        for target, det in zip(targets, detections):
            predictions[int(target["image_id"])] = {k: v.cpu() for k, v in det.items()}
    return predictions


def check_classes(reader: DetectionReader, meta: ModelMeta, weights: str) -> None:
    data_names = list(reader.info.class_names)
    if data_names != list(meta.class_names):
        raise GridyoloError(
            f"{weights}: the checkpoint has {meta.num_classes} classes but {reader.name} has {len(data_names)}"
            + ("" if len(data_names) != meta.num_classes else " (same count, different names or order)")
        )


def evaluate_checkpoint(
    weights: str,
    root: str | Sequence[str],
    format: str,
    split: str | None = None,
    batch_size: int = 16,
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    backend: str = "auto",
    save_json: str | None = None,
    device: str = "cpu",
) -> dict:
    """COCO metrics (and, for VOC data, VOC07 11-point and area AP@0.5) of a checkpoint on a split."""
    model, meta = detector_from_checkpoint(weights)
    reader = build_reader(root, format, split, classes=meta.class_names)
    check_classes(reader, meta, weights)
    predictions = predict_reader(model, meta, reader, batch_size, conf_threshold, iou_threshold, max_detections, device)
    ground_truth = coco_ground_truth(reader)
    results = coco_results(predictions, meta.category_ids)
    metrics = evaluate_coco(ground_truth, results, backend=backend)
    metrics["images"] = len(predictions)
    if format == "voc":
        voc07 = voc_ap(reader.records, predictions, meta.class_names, use_07_metric=True)
        area = voc_ap(reader.records, predictions, meta.class_names, use_07_metric=False)
        metrics.update(voc07_map50=voc07["map"], voc_map50=area["map"], voc07_per_class=voc07["per_class"])
    if save_json:
        os.makedirs(os.path.dirname(os.path.abspath(save_json)), exist_ok=True)
        with open(save_json, "w", encoding="utf-8") as f:
            json.dump(results, f)
        metrics["results_json"] = save_json
        if format != "coco":  # so anyone can re-run pycocotools on the pair
            gt_path = os.path.splitext(save_json)[0] + "_gt.json"
            with open(gt_path, "w", encoding="utf-8") as f:
                json.dump(ground_truth, f)
            metrics["ground_truth_json"] = gt_path
    return metrics
