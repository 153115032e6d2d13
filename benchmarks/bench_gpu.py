"""GPU training throughput, in one run: the model's own limit and the real pipeline on the shipped COCO config.

1. The limit: forward + loss + backward + SGD step on a batch already on the GPU (random pixels, boxes of
   real coco128 batches), 16-mixed, ``configs/coco_resnet50.yaml``'s model and batch: the most images/s
   any loader could feed.
2. ``gridyolo train --config configs/coco_resnet50.yaml`` on coco128 replicated ``--copies`` times
   (``--model.weights null``: no download), steady-state images/s over the epochs after the first (each
   step's end timed by ``gpu_clock.StepClock``), Lightning's simple profiler split (waiting for the
   loader, the step), and GPU utilization sampled with ``nvidia-smi`` every 0.5 s while the steps run.
3. Ultralytics YOLOv8n on the same images, size, batch and workers (a comparator when it can be
   installed, see ``comparators.py``).

On a machine without CUDA it prints one line and exits 0.

    python benchmarks/bench_gpu.py [--copies 16] [--epochs 4] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml
from common import DATA, ROOT, record

CONFIG = ROOT / "configs" / "coco_resnet50.yaml"


def model_limit(steps: int = 30) -> dict:
    """Images/s of the training step alone (no loader), as ``../shared/gpu/limit.py`` measures it."""
    from gridyolo.core.loss import YoloV1Loss
    from gridyolo.core.targets import BatchTargets
    from gridyolo.models import build_detector

    cfg = yaml.safe_load(CONFIG.read_text())
    m, d = cfg["model"], cfg["data"]
    size, batch = d["input_size"], d["batch_size"]
    model = build_detector(m["backbone"], 80, m["grid_size"], m["num_boxes"], None, m["head_channels"]).cuda()
    model = model.to(memory_format=torch.channels_last)
    loss_fn = YoloV1Loss(m["grid_size"], m["num_boxes"], 80)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device="cuda")
    images = images.contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(batch):  # 7 boxes an image, coco's mean
        xy = torch.rand(7, 2, generator=g) * size * 0.7
        items.append({"boxes": torch.cat([xy, xy + torch.rand(7, 2, generator=g) * size * 0.3 + 2], 1),
                      "labels": torch.randint(0, 80, (7,), generator=g), "image_id": torch.tensor(i),
                      "orig_size": torch.tensor([size, size]), "letterbox": torch.ones(4)})  # fmt: skip
    targets = BatchTargets.from_items(items).to("cuda")
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            raw = model(images)
        loss = loss_fn(raw.float(), targets, (size, size))["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return {"img_s": round(batch * steps / (time.perf_counter() - start), 1), "backbone": m["backbone"],
            "input": size, "batch": batch}  # fmt: skip


class Utilization:
    """``nvidia-smi`` sampled every 0.5 s in a thread: ``(time.time(), utilization %)`` pairs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.is_set():
            done = subprocess.run(query, capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip():
                self.samples.append((time.time(), float(done.stdout.split()[0])))
            self._stop.wait(0.5)

    def __enter__(self) -> Utilization:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mean_between(self, start: float, end: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= end]
        return round(statistics.mean(inside), 1) if inside else None


def steady_state(ends: list[list]) -> tuple[float, float, float]:
    """Images/s over the steps of every epoch after the first (the first step of each excluded: it waits
    for the loader's prefetch), and the time span they cover."""
    rate_images, rate_seconds, first, last = 0, 0.0, None, None
    epochs = sorted({e for e, _, _ in ends if e >= 1})
    for epoch in epochs:
        steps = [(n, t) for e, n, t in ends if e == epoch and n > 0]
        if len(steps) < 3:
            continue
        rate_images += sum(n for n, _ in steps[1:])
        rate_seconds += steps[-1][1] - steps[0][1]
        first = steps[0][1] if first is None else first
        last = steps[-1][1]
    if not rate_seconds:
        raise SystemExit("too few steps after the first epoch: raise --copies or --epochs")
    return rate_images / rate_seconds, first, last


def profiler_split(log: str) -> dict:
    """Mean seconds per call of Lightning's simple profiler rows that say where a step goes."""
    rows = {}
    for name in ("train_dataloader_next", "run_training_batch", "training_step", "backward", "optimizer_step"):
        match = re.search(rf"\|\s*\S*{name}\S*\s*\|\s*([0-9.e-]+)\s*\|", log)
        if match:
            rows[name] = float(match.group(1))
    return rows


def train_gridyolo(work: Path, copies: int, epochs: int, workers: int) -> dict:
    clock = work / "steps.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")]),
           "GRIDYOLO_STEP_CLOCK": str(clock)}  # fmt: skip
    cmd = [sys.executable, "-m", "gridyolo", "train", "--config", str(CONFIG), "--model.weights", "null",
           "--data.root", str(work / "coco"), "--data.num_workers", str(workers), "--trainer.max_epochs", str(epochs),
           "--trainer.profiler", "simple", "--trainer.callbacks+=gpu_clock.StepClock", "--project",
           str(work / "runs"), "--name", "gy"]  # fmt: skip
    with Utilization() as util:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"gridyolo train failed:\n{done.stderr[-3000:]}")
    img_s, start, end = steady_state(json.loads(clock.read_text()))
    return {"img_s": round(img_s, 1), "gpu_util_mean": util.mean_between(start, end),
            "profiler_mean_s": profiler_split(done.stdout + done.stderr), "epochs": epochs, "workers": workers,
            "images": 128 * copies}  # fmt: skip


def train_ultralytics(work: Path, epochs: int, workers: int) -> dict | None:
    from bench_loader import to_yolo
    from comparators import ultralytics_env

    env = ultralytics_env(work)
    if env is None:
        return None
    data_yaml = to_yolo(work / "coco", work / "yolo", {**os.environ, "PYTHONPATH": str(ROOT / "src")})
    d = yaml.safe_load(CONFIG.read_text())["data"]
    code = (
        "import json, sys, time\nfrom ultralytics import YOLO\nends = []\nm = YOLO('yolov8n.yaml')\n"
        "m.add_callback('on_train_batch_end', lambda t: ends.append((t.epoch, time.time())))\n"
        f"m.train(data={str(data_yaml)!r}, imgsz={d['input_size']}, epochs={epochs}, batch={d['batch_size']}, "
        f"workers={workers}, device=0, plots=False, amp=True, project={str(work / 'yruns')!r}, name='v8n', "
        "exist_ok=True, pretrained=False, val=True, verbose=False, seed=0)\nprint(json.dumps(ends))\n"
    )
    with Utilization() as util:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=work)
    if done.returncode != 0:
        print(f"comparator failed: {done.stderr[-1000:]}")
        return None
    ends = [[e, d["batch_size"], t] for e, t in json.loads(done.stdout.strip().splitlines()[-1])]
    img_s, start, end = steady_state(ends)
    return {"img_s": round(img_s, 1), "gpu_util_mean": util.mean_between(start, end)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=16, help="coco128 this many times (128 images each)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device here (torch.cuda.is_available() is False); BENCHMARKS.md, GPU, has the "
              "numbers measured on one")  # fmt: skip
        return
    if not (DATA / "coco128").is_dir():
        print(f"skipped: {DATA / 'coco128'} is absent (the shared data)")
        return
    from bench_loader import replicate_coco128

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        replicate_coco128(work / "coco", args.copies)
        limit = model_limit()
        print("limit", limit, flush=True)
        ours = train_gridyolo(work, args.copies, args.epochs, args.workers)
        print("gridyolo", ours, flush=True)
        theirs = train_ultralytics(work, args.epochs, args.workers)
        print("ultralytics", theirs, flush=True)
    value = {"limit_img_s": limit["img_s"], "train_img_s": ours["img_s"],
             "train_over_limit": round(ours["img_s"] / limit["img_s"], 3), "gpu_util_mean": ours["gpu_util_mean"]}
    if theirs:
        value["ultralytics_img_s"] = theirs["img_s"]
        value["train_over_ultralytics"] = round(ours["img_s"] / theirs["img_s"], 3)
    record("gpu_train", value, "python benchmarks/bench_gpu.py", config=str(CONFIG.relative_to(ROOT)), limit=limit,
           gridyolo=ours, ultralytics=theirs, copies=args.copies)  # fmt: skip


if __name__ == "__main__":
    main()
