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

from gridyolo.checkpoint import detector_from_checkpoint
from gridyolo.data.readers import build_reader
from gridyolo.data.synthetic import write_synthetic_coco
from gridyolo.drawing import draw_detections
from gridyolo.evaluation import coco_ground_truth, coco_results, evaluate_coco
from gridyolo.evaluation.runner import predict_reader
from gridyolo.runs import format_metrics_table, write_json
from gridyolo.train_cli import run_train


def run_demo(config: str = "configs/demo.yaml", out: str = "runs/demo", extra: list[str] | None = None) -> dict:
    start = time.time()
    out_dir = Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # the demo always starts fresh (a documented exception to "never overwrite")
    data_dir = out_dir / "data"
    print(f"[demo] writing the synthetic dataset to {data_dir}")
    write_synthetic_coco(str(data_dir))
    print("[demo] training (tiny Darknet from scratch, CPU)")
    args = ["--config", config, "--data.root", str(data_dir), "--project", str(out_dir.parent), "--name", out_dir.name,
            "--exist_ok", "true", *(extra or [])]  # fmt: skip
    run_train(args)

    weights = out_dir / "weights" / "best.ckpt"
    model, meta = detector_from_checkpoint(str(weights))
    reader = build_reader(str(data_dir), "coco", "val")
    predictions = predict_reader(model, meta, reader, batch_size=16)
    metrics = evaluate_coco(coco_ground_truth(reader), coco_results(predictions, meta.category_ids), "pycocotools")
    metrics.pop("pr50", None)
    training = json.loads((out_dir / "metrics.json").read_text()) if (out_dir / "metrics.json").exists() else {}
    elapsed = round(time.time() - start, 1)
    summary = {**metrics, "weights": str(weights), "images": len(reader), "total_seconds": elapsed}
    summary["training"] = training
    write_json(out_dir / "metrics.json", summary)

    drawn = out_dir / "detections"
    drawn.mkdir(exist_ok=True)
    for record in reader.records[:6]:
        det = predictions[record.image_id]
        keep = det["scores"] >= 0.3
        image = reader[reader.records.index(record)].image
        picture = draw_detections(image, det["boxes"][keep].numpy(), det["scores"][keep].numpy(),
                                  det["labels"][keep].numpy(), meta.class_names)  # fmt: skip
        cv2.imwrite(str(drawn / Path(record.file).name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    print(format_metrics_table(metrics, title=f"[demo] {weights} on the {len(reader)} validation images"))
    print(f"[demo] done in {summary['total_seconds']:.0f} s")
    print(f"  data         {data_dir}/ (COCO json + images)")
    print(f"  checkpoint   {weights} (and last.ckpt)")
    print(f"  metrics      {out_dir / 'metrics.json'}  (map {metrics['map']:.3f}, map50 {metrics['map50']:.3f})")
    print(f"  detections   {drawn}/")
    print(f"  plots, logs  {out_dir / 'plots'}/, {out_dir / 'metrics.csv'}, {out_dir / 'tensorboard'}/")
    return summary
