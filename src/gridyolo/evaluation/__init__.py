"""Evaluation: COCO mAP (pycocotools, or faster-coco-eval when installed) and Pascal VOC AP of a
predictor (any weights file, through ``deploy.load_predictor``) or of a predictions file, on a split of
any dataset format (``runner``); plots and text reports."""

from gridyolo.evaluation.coco_metrics import coco_ground_truth, coco_results, evaluate_coco
from gridyolo.evaluation.voc_ap import voc_ap

__all__ = ["coco_ground_truth", "coco_results", "evaluate_coco", "voc_ap"]
