"""``gridyolo data check``: what a dataset holds and what validation changed in it."""

from __future__ import annotations

from collections import Counter

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.data.grid_fit import grid_report
from gridyolo.data.image_scan import FATAL, check_images


def dataset_report(
    reader: DetectionReader, decode_images: bool = True, workers: int | None = None, use_cache: bool = True,
    progress: bool = False, stride: int | None = None, resize_mode: str = "letterbox",
) -> dict:  # fmt: skip
    """Counts of a dataset and everything wrong with it, as one JSON-ready dict.

    Keys: ``dataset``, ``images``, ``boxes`` (kept, crowd excluded), ``crowd``, ``difficult``,
    ``negative_images`` (no boxes), ``classes`` (name -> kept boxes, every class listed),
    ``image_sizes`` (``"WxH"`` -> images, most common first), ``clipped`` and ``dropped``
    (lists of ``{"file", "reason", "box"}``), ``notes`` (findings that changed nothing),
    ``image_problems`` (``{"file", "kind", "detail"}`` from decoding every image, see
    ``image_scan``; absent when ``decode_images`` is off), ``grid`` (with a backbone ``stride``: object
    sizes, cell ownership per grid size, a recommended grid and input size; ``grid_fit.grid_report``)
    and ``ok`` (no problem that stops training).
    """
    report = _counts(reader)
    if stride is not None:
        report["grid"] = grid_report(reader.records, stride, resize_mode, class_names=reader.info.class_names)
    report["notes"] = list(getattr(reader, "notes", []))
    if decode_images:
        problems = check_images(reader.records, reader.name, workers, use_cache, progress)
        report["image_problems"] = [p.to_dict() for p in problems]
    report["ok"] = not any(p["kind"] in FATAL for p in report.get("image_problems", []))
    return report


def _counts(reader: DetectionReader) -> dict:
    records = reader.records
    labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, dtype=np.int64)
    per_class = np.bincount(labels, minlength=reader.info.num_classes)
    sizes = Counter(f"{r.width}x{r.height}" for r in records)
    return {
        "dataset": reader.name,
        "images": len(records),
        "boxes": int(labels.shape[0]),
        "crowd": int(sum(len(r.crowd_labels) for r in records)),
        "difficult": int(sum(int(r.difficult.sum()) for r in records)),
        "negative_images": int(sum(1 for r in records if len(r.labels) == 0)),
        "classes": {name: int(n) for name, n in zip(reader.info.class_names, per_class)},
        "image_sizes": dict(sizes.most_common()),
        "clipped": [issue.to_dict() for issue in reader.clipped],
        "dropped": [issue.to_dict() for issue in reader.dropped],
    }


def format_report(report: dict, max_sizes: int = 5) -> str:
    """Human-readable text of ``dataset_report``."""
    used = sum(1 for n in report["classes"].values() if n)
    lines = [
        f"dataset   {report['dataset']}",
        f"images    {report['images']} ({report['negative_images']} without boxes)",
        f"boxes     {report['boxes']} kept, {report['crowd']} crowd (evaluation only), {report['difficult']} difficult",
        f"classes   {len(report['classes'])} listed, {used} with boxes",
    ]
    width = max((len(n) for n in report["classes"]), default=5)
    lines += [f"  {name:<{width}}  {n}" for name, n in report["classes"].items()]
    sizes = list(report["image_sizes"].items())
    lines.append(f"image sizes ({len(sizes)} distinct): " + ", ".join(f"{s} x{n}" for s, n in sizes[:max_sizes]))
    for key in ("clipped", "dropped"):
        lines.append(f"{key} boxes: {len(report[key])}")
        lines += [f"  {item['file']}: {item['reason']}" for item in report[key]]
    lines += [f"note: {note}" for note in report.get("notes", [])]
    if "grid" in report:
        lines += _format_grid(report["grid"], report.get("backbone", ""))
    if "image_problems" in report:
        problems = report["image_problems"]
        lines.append(f"image problems: {len(problems)} (every image decoded)")
        lines += [f"  {p['file']}: {p['kind']}: {p['detail']}" for p in problems]
    return "\n".join(lines)


def _format_grid(grid: dict, backbone: str) -> list[str]:
    size = grid["object_size"]
    lines = [f"grid fit for {backbone or 'the backbone'} (stride {grid['stride']}), {grid['objects']} objects:"]
    if size.get("relative_size"):
        q = size["relative_size"]
        lines.append(f"  object size sqrt(area) / input: p10 {q['p10']:.3f}, median {q['p50']:.3f}, p90 {q['p90']:.3f}")
    lines.append("  S   own a cell   input sizes whose feature map fits S (k*S*stride)")
    for c in grid["candidates"]:
        sizes = ", ".join(map(str, c["input_sizes"][:5])) or "-"
        lines.append(f"  {c['grid_size']:<3} {c['owning_cell']:>9.1%}   {sizes}")
    rec = grid["recommended"]
    lines.append(f"recommended: grid_size {rec['grid_size']}, input_size {rec['input_size']} "
                 f"(feature map {rec['feature_map']}x{rec['feature_map']}): {rec['why']}")  # fmt: skip
    if rec.get("coarse_grid_size"):
        lines.append(f"with YOLOv1's loss instead: grid_size {rec['coarse_grid_size']} at the same input: "
                     f"{rec['coarse_why']}")  # fmt: skip
    return lines
