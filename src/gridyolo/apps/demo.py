"""``gridyolo demo`` / ``make demo``: the whole pipeline on a machine with no data and no internet.

Generates the synthetic shapes dataset (COCO format) under ``runs/demo/data``, trains the demo config
on the CPU into ``runs/demo``, evaluates ``runs/demo/weights/best.ckpt`` on the validation split,
writes ``runs/demo/metrics.json``, draws detections on a few validation images and says where it all is.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import torch

from gridyolo.apps.detect import run_detect
from gridyolo.apps.drawing import draw_detections
from gridyolo.apps.explain import explain
from gridyolo.core.decode_settings import resolve_conf_threshold
from gridyolo.data.readers import build_reader
from gridyolo.data.synthetic import write_synthetic_coco, write_synthetic_video
from gridyolo.deploy.export import export_torchscript, fresh_process_parity
from gridyolo.deploy.predictor import load_predictor
from gridyolo.errors import GridyoloError
from gridyolo.evaluation.report import format_metrics_table
from gridyolo.evaluation.runner import predict_reader
from gridyolo.evaluation.scoring import coco_scores
from gridyolo.files import write_json
from gridyolo.training.cli import run_train

# The shapes' centres fall in distinct cells of a 4x4 grid (``write_synthetic_coco``): the data every demo
# benchmark measured, whatever the config's grid (each cell of an 8x8 or 4x4 grid lies in one of them).
DEMO_DATA_GRID = 4


def run_demo(config: str = "configs/demo.yaml", out: str = "runs/demo", extra: list[str] | None = None) -> dict:
    start = time.time()
    out_dir = Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # the demo always starts fresh (a documented exception to "never overwrite")
    data_dir = out_dir / "data"
    print(f"[demo] writing the synthetic dataset to {data_dir}")
    write_synthetic_coco(str(data_dir), grid_size=DEMO_DATA_GRID)
    print(f"[demo] training ({config})")
    args = ["--config", config, "--data.root", str(data_dir), "--project", str(out_dir.parent), "--name", out_dir.name,
            "--exist_ok", "true", *(extra or [])]  # fmt: skip
    run_train(args)

    weights = out_dir / "weights" / "best.ckpt"
    predictor = load_predictor(str(weights), "torch", conf_threshold=0.001, iou_threshold=0.5)
    reader = build_reader(str(data_dir), "coco", "val")
    predictions = predict_reader(predictor, reader, batch_size=16)
    metrics = coco_scores(reader, predictions, backend="pycocotools")
    metrics.pop("pr50", None)
    training = json.loads((out_dir / "metrics.json").read_text()) if (out_dir / "metrics.json").exists() else {}
    elapsed = round(time.time() - start, 1)
    summary = {**metrics, "weights": str(weights), "images": len(reader), "total_seconds": elapsed}
    summary["training"] = training
    write_json(out_dir / "metrics.json", summary)

    drawn = out_dir / "detections"
    drawn.mkdir(exist_ok=True)
    threshold = resolve_conf_threshold(None, predictor.info["model_conf_threshold"])  # what detect would use
    for record in reader.records[:6]:
        det = predictions[record.image_id]
        keep = det["scores"] >= threshold
        image = reader[reader.records.index(record)].image
        picture = draw_detections(image, det["boxes"][keep].numpy(), det["scores"][keep].numpy(),
                                  det["labels"][keep].numpy(), predictor.class_names)  # fmt: skip
        cv2.imwrite(str(drawn / Path(record.file).name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    summary["export"] = _export_and_check(weights, reader, out_dir)
    summary["detect"] = _detect_video(weights, out_dir)
    summary["explain"] = _explain(weights, reader, out_dir)
    summary["total_seconds"] = round(time.time() - start, 1)
    write_json(out_dir / "metrics.json", summary)

    print(format_metrics_table(metrics, title=f"[demo] {weights} on the {len(reader)} validation images"))
    print(f"[demo] done in {summary['total_seconds']:.0f} s")
    print(f"  data         {data_dir}/ (COCO json + images)")
    print(f"  checkpoint   {weights} (and last.ckpt)")
    print(f"  metrics      {out_dir / 'metrics.json'}  (map {metrics['map']:.3f}, map50 {metrics['map50']:.3f})")
    print(f"  detections   {drawn}/ (validation images), {summary['detect']['video']} (video)")
    print(
        f"  torchscript  {summary['export']['file']} (fresh-process parity: max box difference "
        f"{summary['export']['max_box_diff']:.2e} px, same labels: {summary['export']['same_labels']})"
    )
    print(f"  explain      {out_dir / 'explain'}/")
    print(f"  plots, logs  {out_dir / 'plots'}/, {out_dir / 'metrics.csv'}, {out_dir / 'tensorboard'}/")
    return summary


def _export_and_check(weights: Path, reader, out_dir: Path) -> dict:
    """Export TorchScript and check it in a fresh process (torch + torchvision only) against eager."""
    path = weights.with_suffix(".torchscript")
    export_torchscript(str(weights), str(path))
    eager = load_predictor(str(weights), "torch").model  # InferenceModel: the same torch resize as the file
    images = [torch.from_numpy(reader[i].image).permute(2, 0, 1).contiguous() for i in range(8)]
    report = fresh_process_parity(str(path), images, eager(images), str(out_dir))
    if not report["same_labels"] or report["max_box_diff"] > 1e-3 or report["gridyolo_imported"]:
        raise GridyoloError(f"{path}: exported model differs from the checkpoint: {report}")
    print(f"[demo] exported {path}; fresh-process parity ok (max box difference {report['max_box_diff']:.2e} px)")
    return {"file": str(path), **{k: report[k] for k in ("max_box_diff", "same_labels", "detections")}}


def _detect_video(weights: Path, out_dir: Path) -> dict:
    video = write_synthetic_video(str(out_dir / "shapes.mp4"))
    result = run_detect(str(weights.with_suffix(".torchscript")), video, str(out_dir / "detect"), save_json=True,
                        progress=False)  # fmt: skip
    print(f"[demo] detect on {video}: {result['timing']}")
    return {k: result[k] for k in ("video", "predictions", "images", "ms_per_image")}


def _explain(weights: Path, reader, out_dir: Path) -> list[str]:
    record = reader.records[0]
    labels = out_dir / "explain_labels.txt"
    w, h = record.width, record.height
    lines = [
        f"{label} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
        for (x1, y1, x2, y2), label in zip(record.boxes, record.labels)
    ]
    labels.write_text("\n".join(lines) + "\n")
    return explain(str(weights), record.file, str(out_dir / "explain"), str(labels))
