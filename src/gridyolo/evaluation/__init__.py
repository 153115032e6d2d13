"""Evaluation: COCO mAP (pycocotools, or faster-coco-eval when installed) and Pascal VOC AP."""

from gridyolo.evaluation.coco_metrics import coco_ground_truth, coco_results, evaluate_coco
from gridyolo.evaluation.voc_ap import voc_ap

__all__ = ["coco_ground_truth", "coco_results", "evaluate_coco", "voc_ap"]
