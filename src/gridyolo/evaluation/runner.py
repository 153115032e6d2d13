"""A weights file's detections on every image of a dataset split, in the dataset's labels.

No torch at import: an ``.onnx`` file is run with ONNX Runtime, OpenCV and numpy only
(``predict_reader`` picks the loop that fits the predictor)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.data.sample import DatasetInfo
from gridyolo.errors import GridyoloError
from gridyolo.input_guards import repeated


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
    from torch.utils.data import DataLoader

    from gridyolo.core.letterbox import EvalTransform
    from gridyolo.data.dataset import DetectionDataset, collate_detections

    transform = EvalTransform(predictor.input_size, predictor.info["resize_mode"])
    loader = DataLoader(DetectionDataset(reader, transform), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_detections)  # fmt: skip
    predictions = {}
    for images, targets in loader:
        params, sizes = targets.letterbox, targets.orig_size.float()  # collate_detections packs them
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
