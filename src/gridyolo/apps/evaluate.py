"""``gridyolo eval``: a weights file's detections, or another detector's saved ones, scored on a dataset
split (``evaluation.scoring``). No torch at import (an ``.onnx`` file is evaluated without it)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from gridyolo.data.readers import build_reader
from gridyolo.deploy.predictor import load_predictor
from gridyolo.evaluation.runner import label_mapping, predict_reader, remap_labels
from gridyolo.evaluation.scoring import score_detections
from gridyolo.files import require_empty_folder, require_free_file
from gridyolo.weights_kind import weights_format


def check_outputs_free(save_json: str | None, plots_dir: str | None, exist_ok: bool) -> None:
    """Refuse to overwrite a results json, its ``_gt.json`` or a non-empty plots folder (unless ``exist_ok``)."""
    if save_json:
        for path in (save_json, os.path.splitext(save_json)[0] + "_gt.json"):
            require_free_file(path, "--save-json", exist_ok)
    if plots_dir:
        require_empty_folder(plots_dir, "--plots", exist_ok)


def evaluate_weights(
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
    plots_dir: str | None = None,
    exist_ok: bool = False,
    model_backend: str | None = None,
    trust_compiled: bool = False,
) -> dict:
    """Metrics of a weights file (a checkpoint, or its TorchScript or ONNX export) on a split of any
    format (see ``score_detections``); ``backend`` is the COCO evaluator's, ``model_backend`` what runs
    the model (``deploy.load_predictor``; default: torch for a checkpoint, as training validated it,
    the file's own runtime for an export).

    The model's labels are matched to the dataset's by class name, so a model trained on COCO json,
    VOC xml or YOLO txt scores the same on the same images in any of the three formats.
    """
    check_outputs_free(save_json, plots_dir, exist_ok)
    if model_backend is None:
        model_backend = "torch" if weights_format(weights) == "checkpoint" else "auto"
    predictor = load_predictor(weights, model_backend, device, None, conf_threshold, iou_threshold, max_detections,
                               channels_last=False, trust_compiled=trust_compiled)  # fmt: skip
    names = predictor.class_names
    reader = build_reader(root, format, split, classes=names)
    mapping = label_mapping(names, reader.info, weights)
    predictions = predict_reader(predictor, reader, batch_size)
    metrics = score_detections(reader, remap_labels(predictions, mapping), None, backend, save_json, plots_dir,
                               predictor.info["model_conf_threshold"])  # fmt: skip
    metrics["model_backend"] = predictor.info["backend"]
    for note in predictor.info["notes"]:
        metrics.setdefault("notes", []).append(note)
    return metrics


def evaluate_predictions_file(
    predictions_path: str,
    root: str | Sequence[str],
    format: str,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    backend: str = "auto",
    save_json: str | None = None,
    plots_dir: str | None = None,
    exist_ok: bool = False,
) -> dict:
    """Metrics of another detector's output: a COCO results json or a folder of YOLO txt predictions
    (``gridyolo.evaluation.predictions``), against a split of any format. ``classes``: VOC class list."""
    from gridyolo.evaluation.predictions import load_predictions

    check_outputs_free(save_json, plots_dir, exist_ok)
    reader = build_reader(root, format, split, classes=classes)
    results, predictions, notes = load_predictions(predictions_path, reader)
    metrics = score_detections(reader, predictions, results, backend, save_json, plots_dir)
    metrics["notes"] = notes
    return metrics
