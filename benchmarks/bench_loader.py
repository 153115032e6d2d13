"""The training loader alone: images/s that the training DataLoader delivers on real images, with 1 and 2
workers, beside Ultralytics' own training dataloader on the same images (a comparator, never a dependency).

coco128 replicated to ``--copies`` × 128 images (symlinks), ``configs/coco_resnet50.yaml``'s data section as
shipped (448 px, batch 64, its augmentation: Mosaic 0.5, affine, colour, flip); Ultralytics at the same size,
batch, Mosaic probability, scale, translation, hue / saturation / exposure strength and flip. Each loader runs
in its own process; the rounds interleave the candidates (A, B, C, A, B, C...); values are medians of the
rounds, each round's rate taken over ``--batches`` batches after ``--warmup`` (the workers' start excluded).

    python benchmarks/bench_loader.py [--before <checkout>/src] [--rounds 2] [--copies 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import DATA, ROOT, record
from comparators import ultralytics_env

CONFIG = ROOT / "configs" / "coco_resnet50.yaml"


def replicate_coco128(out: Path, copies: int) -> None:
    """coco128 ``copies`` times as a COCO ``train2017`` split (image symlinks, fresh ids), itself as ``val2017``."""
    src = DATA / "coco128"
    ann = json.loads((src / "annotations" / "instances_train2017.json").read_text())
    (out / "annotations").mkdir(parents=True)
    by_image: dict[int, list[dict]] = {}
    for a in ann["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images, annotations = [], []
    for split in ("train2017", "val2017"):
        (out / split).mkdir()
    for copy in range(copies):
        for image in ann["images"]:
            name = f"r{copy:02d}_{image['file_name']}"
            os.symlink((src / "train2017" / image["file_name"]).resolve(), out / "train2017" / name)
            images.append({**image, "id": len(images) + 1, "file_name": name})
            for a in by_image.get(image["id"], []):
                annotations.append({**a, "id": len(annotations) + 1, "image_id": images[-1]["id"]})
    for image in ann["images"]:
        os.symlink((src / "train2017" / image["file_name"]).resolve(), out / "val2017" / image["file_name"])
    (out / "annotations" / "instances_train2017.json").write_text(
        json.dumps({**ann, "images": images, "annotations": annotations})
    )
    (out / "annotations" / "instances_val2017.json").write_text(json.dumps(ann))


def to_yolo(coco: Path, out: Path, env: dict) -> Path:
    for split, role in (("train2017", "train"), ("val2017", "val")):
        subprocess.run([sys.executable, "-m", "gridyolo", "data", "convert", str(coco), "--format", "coco",
                        "--split", split, "--out-split", role, "--to", "yolo", "--out", str(out), "--images",
                        "symlink", "--exist-ok"], check=True, capture_output=True, env=env)  # fmt: skip
    return out / "data.yaml"


def shipped_data() -> dict:
    return yaml.safe_load(CONFIG.read_text())["data"]


def child_gridyolo(root: str, workers: int, warmup: int, batches: int) -> dict:
    import gridyolo
    from gridyolo.data.datamodule import DetectionDataModule
    from gridyolo.data.transforms import AugmentConfig

    cfg = shipped_data()
    data = DetectionDataModule(root, cfg["format"], cfg["train_split"], cfg["val_split"],
                               input_size=cfg["input_size"], resize_mode=cfg["resize_mode"],
                               augment=AugmentConfig(**cfg.get("augment", {})), batch_size=cfg["batch_size"],
                               num_workers=workers, check_images=False)  # fmt: skip
    data.setup()
    return {**time_loader(data.train_dataloader(), warmup, batches, lambda b: b[0]), "src": gridyolo.__file__}


def child_ultralytics(data_yaml: str, workers: int, warmup: int, batches: int) -> dict:
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = shipped_data()
    aug = cfg.get("augment", {})
    hyp = get_cfg(overrides={  # gridyolo's augmentation strength in Ultralytics' terms
        "imgsz": cfg["input_size"], "mosaic": aug.get("mosaic", 0.0), "scale": aug.get("scale", 0.2),
        "translate": aug.get("translate", 0.2), "degrees": 0.0, "shear": 0.0, "perspective": 0.0,
        "hsv_h": aug.get("hue", 0.015), "hsv_s": aug.get("saturation", 1.5) - 1, "hsv_v": aug.get("exposure", 1.5) - 1,
        "fliplr": aug.get("flip", 0.5), "flipud": 0.0, "mixup": 0.0, "copy_paste": 0.0, "cutmix": 0.0,
    })  # fmt: skip
    data = check_det_dataset(data_yaml)
    dataset = build_yolo_dataset(hyp, data["train"], cfg["batch_size"], data, mode="train")
    loader = build_dataloader(dataset, cfg["batch_size"], workers, shuffle=True, rank=-1)
    return time_loader(loader, warmup, batches, lambda b: b["img"])


def time_loader(loader, warmup: int, batches: int, images_of) -> dict:
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    waits, seen = [], 0
    start = time.perf_counter()
    for _ in range(batches):
        t = time.perf_counter()
        images = images_of(next(it))
        waits.append((time.perf_counter() - t) * 1e3)
        seen += len(images)
    return {"img_s": seen / (time.perf_counter() - start), "wait_ms": statistics.median(waits)}


def run_child(kind: str, source: str, workers: int, warmup: int, batches: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--source", source, "--workers", str(workers),
           "--warmup", str(warmup), "--batches", str(batches)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{kind} with {workers} worker(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=None, help="the src folder of another checkout to measure beside")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--copies", type=int, default=8, help="coco128 this many times (128 images each)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--child", choices=["gridyolo", "ultralytics"], help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = child_gridyolo if args.child == "gridyolo" else child_ultralytics
        print(json.dumps(run(args.source, args.workers[0], args.warmup, args.batches)))
        return
    if not (DATA / "coco128").is_dir():
        print(f"skipped: {DATA / 'coco128'} is absent (the shared data)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        replicate_coco128(work / "coco", args.copies)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        candidates = {"gridyolo": ("gridyolo", str(work / "coco"), env)}
        if args.before:
            before_env = {**env, "PYTHONPATH": str(Path(args.before).resolve())}
            candidates = {"before": ("gridyolo", str(work / "coco"), before_env), **candidates}
        ultra = ultralytics_env(work)
        if ultra is not None:
            candidates["ultralytics"] = ("ultralytics", str(to_yolo(work / "coco", work / "yolo", env)), ultra)
        rows: dict[str, dict[int, list[dict]]] = {name: {w: [] for w in args.workers} for name in candidates}
        for round_ in range(args.rounds):
            for workers in args.workers:
                for name, (kind, source, child_env) in candidates.items():
                    rows[name][workers].append(run_child(kind, source, workers, args.warmup, args.batches, child_env))
                    print(f"round {round_} {name} workers {workers}: {rows[name][workers][-1]}", flush=True)
    medians = {name: {w: round(statistics.median(r["img_s"] for r in runs), 1) for w, runs in per.items()}
               for name, per in rows.items()}  # fmt: skip
    summary = {f"{name}_{w}w_img_s": value for name, per in medians.items() for w, value in per.items()}
    for w in args.workers:
        if "ultralytics" in medians:
            summary[f"gridyolo_over_ultralytics_{w}w"] = round(medians["gridyolo"][w] / medians["ultralytics"][w], 3)
        if "before" in medians:
            summary[f"gridyolo_over_before_{w}w"] = round(medians["gridyolo"][w] / medians["before"][w], 3)
    print(json.dumps(summary, indent=1))
    command = "python benchmarks/bench_loader.py" + (" --before <checkout>/src" if args.before else "")
    record("train_loader_img_s", summary, command, config=str(CONFIG.relative_to(ROOT)), copies=args.copies,
           images=128 * args.copies, rounds=args.rounds, warmup=args.warmup, batches=args.batches,
           runs={name: {str(w): r for w, r in per.items()} for name, per in rows.items()})  # fmt: skip


if __name__ == "__main__":
    main()
