"""COCO mAP on COCO-format results: original category ids, original-image pixels, crowd honoured.

The numbers come from pycocotools (the reference) or faster-coco-eval (a faster drop-in that gives
the same numbers); ``backend="auto"`` takes faster-coco-eval when it is installed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Mapping

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.data.coco import CocoReader, records_to_coco

BACKENDS = ("auto", "pycocotools", "faster_coco_eval")
STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)  # fmt: skip  -- the order of COCOeval.stats


def is_coco(reader: DetectionReader) -> bool:
    """A COCO json split (or a part of one): evaluated against its own annotation file, no VOC metrics."""
    return isinstance(getattr(reader, "parent", reader), CocoReader)


def coco_ground_truth(reader: DetectionReader) -> dict:
    """The ground truth as a COCO json dict, in the dataset's own category ids.

    A COCO dataset is evaluated against its own annotation file (its ``area`` fields, which set small /
    medium / large, are segmentation areas). Other formats are converted: ``area`` is the box area,
    category ids are ``info.category_ids``, and VOC's difficult objects are written ``iscrowd=1`` with
    ``difficult=1`` (``data.coco.records_to_coco``): plain pycocotools then ignores them as crowd regions,
    and ``evaluate_coco`` matches them by IoU as the VOC devkit does.
    """
    if is_coco(reader):
        source = getattr(reader, "parent", reader)
        with open(source.annotation_file, encoding="utf-8") as f:
            data = json.load(f)
        if source is not reader:  # a part of the split (a carved validation split): its images only
            keep = {record.image_id for record in reader.records}
            data = {**data, "images": [i for i in data["images"] if i["id"] in keep],
                    "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}  # fmt: skip
        return data
    return records_to_coco(reader.records, reader.info.category_ids, reader.info.class_names)


def coco_results(detections: Mapping[int, Mapping], category_ids: tuple[int, ...] | list[int]) -> list[dict]:
    """The standard COCO results list from ``{image_id: {"boxes" xyxy px, "scores", "labels"}}``."""
    results = []
    for image_id, det in detections.items():
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(det["scores"], dtype=np.float64).reshape(-1)
        labels = np.asarray(det["labels"], dtype=np.int64).reshape(-1)
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_ids[label]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return results


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"COCO evaluation backend must be one of {BACKENDS}, got '{backend}'")
    if backend != "auto":
        return backend
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return "pycocotools"
    return "faster_coco_eval"


# While evaluating, a difficult object is iscrowd=2: ignored and matchable any number of times like a
# crowd region (pycocotools and faster-coco-eval test iscrowd for truth), but matched by IoU.
_DIFFICULT = 2


@contextlib.contextmanager
def _difficult_matched_by_iou(cocoeval_module):
    """Inside ``cocoeval_module``, ``maskUtils.iou(d, g, iscrowd)`` computes plain IoU for ``iscrowd == 2``
    and keeps intersection-over-detection-area for real crowds (``iscrowd == 1``)."""
    real = cocoeval_module.maskUtils

    class _Mask:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def iou(d, g, iscrowd):
            return real.iou(d, g, [int(c == 1) for c in iscrowd])

    cocoeval_module.maskUtils = _Mask()
    try:
        yield
    finally:
        cocoeval_module.maskUtils = real


def evaluate_coco(ground_truth: dict, results: list[dict], backend: str = "auto") -> dict:
    """COCO bbox metrics of ``results`` against ``ground_truth`` (both COCO json structures).

    Annotations with ``difficult`` set (Pascal VOC) follow the VOC devkit: a detection whose IoU with a
    difficult object of its class reaches the threshold, and that matches no regular object, is ignored
    (neither true nor false positive); several detections may fall on one difficult object. Real
    crowd regions (``iscrowd`` without ``difficult``) keep COCO's rule.

    Returns ``map``, ``map50``, ``map75``, ``map_small`` / ``_medium`` / ``_large``, ``mar_1`` / ``_10`` /
    ``_100`` / ``_small`` / ``_medium`` / ``_large`` (COCOeval's 12 stats; -1 where a range has no ground
    truth), ``per_class`` (class name -> AP@[.5:.95], -1 for classes without ground truth), ``backend``,
    and ``pr50`` (class name -> precision at the 101 recall points of COCOeval, IoU 0.5; for plots).
    """
    backend = _resolve_backend(backend)
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    if not results:  # both libraries refuse an empty results list; nothing detected is AP 0
        has_gt = {a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd", 0)}
        stats = dict.fromkeys(STAT_NAMES, 0.0)
        per_class = {names[c]: (0.0 if c in has_gt else -1.0) for c in sorted(names)}
        return {**stats, "per_class": per_class, "backend": backend, "pr50": {}}
    ground_truth = copy.deepcopy(ground_truth)
    for annotation in ground_truth["annotations"]:
        if annotation.get("difficult"):
            annotation["iscrowd"] = _DIFFICULT
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster
            from faster_coco_eval.core import cocoeval as cocoeval_module

            gt = COCO(ground_truth)
            evaluator = COCOeval_faster(gt, gt.loadRes(copy.deepcopy(results)), "bbox", print_function=lambda *a: None)
        else:
            from pycocotools import cocoeval as cocoeval_module
            from pycocotools.coco import COCO

            gt = COCO()
            gt.dataset = ground_truth
            gt.createIndex()
            evaluator = cocoeval_module.COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
        with _difficult_matched_by_iou(cocoeval_module):
            evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
    precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]; area "all", maxDets 100
    per_class, pr50 = {}, {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        pr50[names[cat_id]] = [round(float(v), 6) for v in p[0]]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else -1.0
    return {**stats, "per_class": per_class, "backend": backend, "pr50": pr50}
