"""``gridyolo eval``: a checkpoint's detections on a dataset split, scored by COCO (and VOC) metrics.

No torch at import: an ``.onnx`` file is evaluated with ONNX Runtime, OpenCV and numpy only
(``predict_reader`` picks the loop that fits the predictor)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.data.readers import build_reader
from gridyolo.data.sample import DatasetInfo
from gridyolo.deploy.formats import resolve_conf_threshold, weights_format
from gridyolo.deploy.predictor import load_predictor
from gridyolo.errors import GridyoloError
from gridyolo.evaluation.coco_metrics import coco_ground_truth, coco_results, evaluate_coco, is_coco
from gridyolo.evaluation.voc_ap import best_f1_threshold, voc_ap
from gridyolo.files import write_json
from gridyolo.inputs import repeated


def predict_reader(predictor: Any, reader: DetectionReader, batch_size: int = 16, num_workers: int = 0) -> dict:
    """``{image_id: {boxes xyxy original px, scores, labels}}`` for every image of ``reader``.

    What is scored is what the weights file runs: a checkpoint reads through validation's own loader
    (a ``DataLoader`` of ``EvalTransform``: the OpenCV letterbox), so eval reproduces validation; an
    exported file goes through its predictor's own stages on the decoded images: an ONNX file's
    OpenCV letterbox and numpy decode (no torch), a TorchScript file's own ``preprocess`` (torch's
    resize), network and decode, exactly what its ``forward`` runs. The predictor's thresholds apply.
    """
    if predictor.info["format"] == "checkpoint":
        return _predict_reader_torch(predictor, reader, batch_size, num_workers)
    return _predict_reader_stages(predictor, reader, batch_size)


def _predict_reader_stages(predictor: Any, reader: DetectionReader, batch_size: int) -> dict:
    predictions = {}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for start in range(0, len(reader), batch_size):
            samples = list(pool.map(reader.__getitem__, range(start, min(start + batch_size, len(reader)))))
            batch, params, sizes = predictor.preprocess_arrays([sample.image for sample in samples])
            detections = predictor.postprocess(predictor.predict_raw(batch), params, sizes)
            for sample, det in zip(samples, detections):
                predictions[int(sample.image_id)] = {k: v.cpu() if hasattr(v, "cpu") else v for k, v in det.items()}
    return predictions


def _predict_reader_torch(predictor: Any, reader: DetectionReader, batch_size: int, num_workers: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from gridyolo.core.letterbox import EvalTransform
    from gridyolo.data.dataset import DetectionDataset, collate_detections

    transform = EvalTransform(predictor.input_size, predictor.info["resize_mode"])
    loader = DataLoader(DetectionDataset(reader, transform), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_detections)  # fmt: skip
    predictions = {}
    for images, targets in loader:
        params = torch.stack([t["letterbox"] for t in targets])
        sizes = torch.stack([t["orig_size"] for t in targets]).float()
        detections = predictor.postprocess(predictor.predict_raw(images), params, sizes)
        for target, det in zip(targets, detections):
            predictions[int(target["image_id"])] = {k: v.cpu() for k, v in det.items()}
    return predictions


def label_mapping(model_names: Sequence[str], info: DatasetInfo, source: str) -> np.ndarray:
    """``int64 [C]``: the dataset's contiguous label of each model label, matched by class name.

    The model and the dataset must have the same set of class names (in any order), each once;
    otherwise a one-line ``GridyoloError`` says which names differ.
    """
    data_names = list(info.class_names)
    for names, what in ((list(model_names), source), (data_names, "the dataset")):
        twice = repeated(names)
        if twice:
            raise GridyoloError(f"{what} names class(es) {', '.join(twice)} more than once")
    known = set(data_names)
    missing = [n for n in model_names if n not in known]
    model_set = set(model_names)
    extra = [n for n in data_names if n not in model_set]
    if missing or extra:
        parts = [f"only the model has: {', '.join(missing[:8])}" if missing else "",
                 f"only the data has: {', '.join(extra[:8])}" if extra else ""]  # fmt: skip
        raise GridyoloError(
            f"{source}: its {len(model_names)} classes do not match the dataset's {len(data_names)}"
            f" ({'; '.join(p for p in parts if p)})"
        )
    position = {name: i for i, name in enumerate(data_names)}
    return np.array([position[n] for n in model_names], dtype=np.int64)


def remap_labels(predictions: dict[int, dict], mapping: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    """``predictions`` with every label ``l`` replaced by ``mapping[l]`` (numpy arrays)."""
    out = {}
    for image_id, det in predictions.items():
        labels = np.asarray(det["labels"], dtype=np.int64).reshape(-1)
        out[image_id] = {
            "boxes": np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4),
            "scores": np.asarray(det["scores"], dtype=np.float64).reshape(-1),
            "labels": mapping[labels] if labels.size else labels,
        }
    return out


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
    metrics = evaluate_coco(ground_truth, results, backend=backend)
    metrics["images"] = len(reader.records)
    metrics["detections"] = len(results)
    best = best_f1_threshold(reader.records, predictions, reader.info.num_classes)
    if best is not None:
        metrics["f1_threshold"], metrics["f1"] = best  # exact: a rounded-up value drops its own detection
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


def check_outputs_free(save_json: str | None, plots_dir: str | None, exist_ok: bool) -> None:
    """Refuse to overwrite a results json, its ``_gt.json`` or a non-empty plots folder (unless ``exist_ok``)."""
    if exist_ok:
        return
    if save_json:
        for path in (save_json, os.path.splitext(save_json)[0] + "_gt.json"):
            if os.path.exists(path):
                raise GridyoloError(f"{path}: exists; choose another --save-json or pass --exist-ok to overwrite")
    if plots_dir and os.path.isdir(plots_dir) and os.listdir(plots_dir):
        raise GridyoloError(f"{plots_dir}: folder is not empty; choose another --plots or pass --exist-ok")
    if plots_dir and os.path.exists(plots_dir) and not os.path.isdir(plots_dir):
        raise GridyoloError(f"{plots_dir}: exists and is not a folder")


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
