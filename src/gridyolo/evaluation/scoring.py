"""Detections scored against a split's ground truth: COCO metrics, the F1-optimal score threshold, and
(for data with VOC semantics) VOC07 11-point and area AP@0.5. Training's validation, ``gridyolo eval``
and the demo all score through ``coco_scores``."""

from __future__ import annotations

import os

from gridyolo.core.decode_settings import resolve_conf_threshold
from gridyolo.data.base import DetectionReader
from gridyolo.evaluation.coco_metrics import coco_ground_truth, coco_results, evaluate_coco, is_coco
from gridyolo.evaluation.voc_ap import best_f1_threshold, voc_ap
from gridyolo.files import write_json


def coco_scores(
    reader: DetectionReader,
    predictions: dict[int, dict],
    results: list[dict] | None = None,
    backend: str = "auto",
    ground_truth: dict | None = None,
) -> dict:
    """COCO metrics of ``predictions`` (``{image_id: {boxes xyxy original px, scores, labels}}`` in the
    dataset's labels) on ``reader``'s split, plus ``f1_threshold`` / ``f1`` (the score threshold that
    maximizes F1 over all classes pooled, when there is any detection).

    ``results``: the COCO results list when the caller has it verbatim (a results file); built from
    ``predictions`` with the dataset's category ids otherwise. ``ground_truth``: ``coco_ground_truth(reader)``
    when the caller keeps it (validation scores the same split every epoch).
    """
    if ground_truth is None:
        ground_truth = coco_ground_truth(reader)
    if results is None:
        results = coco_results(predictions, reader.info.category_ids)
    metrics = evaluate_coco(ground_truth, results, backend=backend)
    best = best_f1_threshold(reader.records, predictions, reader.info.num_classes)
    if best is not None:
        metrics["f1_threshold"], metrics["f1"] = best  # exact: a rounded-up value drops its own detection
    return metrics


def score_detections(
    reader: DetectionReader,
    predictions: dict[int, dict],
    results: list[dict] | None = None,
    backend: str = "auto",
    save_json: str | None = None,
    plots_dir: str | None = None,
    conf_threshold: float | None = None,
) -> dict:
    """COCO metrics (and, for data with VOC semantics, VOC07 11-point and area AP@0.5) of detections.

    Args:
        reader: the evaluated split; its ground truth and category ids are the reference.
        predictions: ``{image_id: {boxes xyxy original px, scores, labels}}`` in the *dataset's* labels.
        results: the COCO results list, when the caller has it verbatim (a results file); built from
            ``predictions`` with the dataset's category ids otherwise.
        save_json: also write the results json (and, for VOC / YOLO data, the ground truth ``_gt.json``).
        plots_dir: also write ``pr_curves.png`` and ``confusion_matrix.png`` there.
        conf_threshold: the confusion matrix's score threshold (a model's stored one); ``None``: the
            F1-optimal threshold of these detections (``f1_threshold`` in the metrics), else 0.25.
    """
    ground_truth = coco_ground_truth(reader)
    if results is None:
        results = coco_results(predictions, reader.info.category_ids)
    metrics = coco_scores(reader, predictions, results, backend, ground_truth)
    metrics["images"] = len(reader.records)
    metrics["detections"] = len(results)
    metrics["confusion_threshold"] = resolve_conf_threshold(conf_threshold, metrics.get("f1_threshold"))
    if not is_coco(reader):
        names = reader.info.class_names
        voc07 = voc_ap(reader.records, predictions, names, use_07_metric=True)
        area = voc_ap(reader.records, predictions, names, use_07_metric=False)
        metrics.update(voc07_map50=voc07["map"], voc_map50=area["map"], voc07_per_class=voc07["per_class"])
    if save_json:
        write_json(save_json, results, indent=None)
        metrics["results_json"] = save_json
        if not is_coco(reader):  # so anyone can re-run pycocotools on the pair
            gt_path = os.path.splitext(save_json)[0] + "_gt.json"
            write_json(gt_path, ground_truth, indent=None)
            metrics["ground_truth_json"] = gt_path
    if plots_dir:
        from gridyolo.evaluation import plots

        plots.plot_pr_curves(metrics["pr50"], os.path.join(plots_dir, "pr_curves.png"))
        threshold = metrics["confusion_threshold"]
        matrix = plots.confusion_matrix(reader.records, predictions, reader.info.num_classes, threshold)
        plots.plot_confusion_matrix(matrix, reader.info.class_names, os.path.join(plots_dir, "confusion_matrix.png"),
                                    threshold)  # fmt: skip
        metrics["plots"] = plots_dir
    return metrics
