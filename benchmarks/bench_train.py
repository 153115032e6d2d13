"""Training throughput: ``GridYoloModule`` under Lightning vs a bare PyTorch loop (same model, batch,
data, optimizer, interleaved rounds), the data pipeline alone vs the training step alone, peak RSS,
and a whole CPU training run's CPU-seconds per training image.

    python benchmarks/bench_train.py               # QUICK=1: input 320, fewer steps
    python benchmarks/bench_train.py --whole-run [--epochs 40] [--profile] [-- extra train arguments]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from common import DATA, QUICK, ROOT, peak_rss_mb, record

from gridyolo.data.datamodule import DetectionDataModule
from gridyolo.training.module import GridYoloModule

SIZE = 320 if QUICK else 448
BATCH, STEPS = 8, (6 if QUICK else 15)
CLASSES = ["RBC", "WBC", "Platelets"]


def datamodule(workers: int = 1, batch: int = BATCH, size: int = SIZE) -> DetectionDataModule:
    dm = DetectionDataModule(
        str(DATA / "bccd"),
        "voc",
        "trainval",
        "test",
        classes=CLASSES,
        input_size=size,
        batch_size=batch,
        num_workers=workers,
    )
    dm.setup()
    return dm


def module() -> GridYoloModule:
    return GridYoloModule(
        "efficientnet_lite0",
        "imagenet",
        7,
        2,
        256,
        CLASSES,
        [1, 2, 3],
        SIZE,
        optimizer="adamw",
        lr=1e-3,
        ema_decay=0.999,
        channels_last=True,
    )


def bare_loop(dm: DetectionDataModule) -> float:
    """images / s of a plain loop: forward, loss, backward, clip, step, EMA update; first step excluded."""
    lm = module()
    model, optimizer = lm.model.train(), torch.optim.AdamW(lm.model.parameters(), 1e-3, weight_decay=5e-4)
    start, seen = None, 0
    for step, (images, targets) in enumerate(dm.train_dataloader()):
        if step == 1:
            start, seen = time.perf_counter(), 0
        losses = lm.loss_fn(model(images.contiguous(memory_format=torch.channels_last)), targets, (SIZE, SIZE))
        optimizer.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        lm.ema.update_parameters(model)
        seen += len(images)
        if step == STEPS:
            break
    return seen / (time.perf_counter() - start)


class _Clock(L.Callback):
    def __init__(self) -> None:
        self.start, self.seen = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            self.start, self.seen = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= 1:
            self.seen += len(batch[0])


def lightning_loop(dm: DetectionDataModule) -> float:
    clock = _Clock()
    trainer = L.Trainer(
        max_steps=STEPS + 1,
        limit_val_batches=0,
        accelerator="cpu",
        precision=32,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=10.0,
        callbacks=[clock],
    )
    trainer.fit(module(), datamodule=dm)
    return clock.seen / (time.perf_counter() - clock.start)


def loader_vs_step() -> dict:
    dm = datamodule(workers=1)
    start, seen = time.perf_counter(), 0
    for step, (images, _) in enumerate(dm.train_dataloader()):
        seen += len(images)
        if step == 4 * STEPS:
            break
    loader = seen / (time.perf_counter() - start)
    lm = module()
    model, optimizer = lm.model.train(), torch.optim.AdamW(lm.model.parameters(), 1e-3)
    images, targets = next(iter(dm.train_dataloader()))
    images = images.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(STEPS // 2 + 2):
        t = time.perf_counter()
        losses = lm.loss_fn(model(images), targets, (SIZE, SIZE))
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        times.append(time.perf_counter() - t)
    step = len(images) / sorted(times[1:])[len(times[1:]) // 2]
    return {"loader_img_s": round(loader, 1), "step_img_s": round(step, 2), "ratio": round(loader / step, 2)}


def rss_of_training_at_448_batch16() -> float:
    """Peak RSS of a separate process that runs 3 training steps at batch 16, 448."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import bench_train as b, torch;"
        "dm = b.datamodule(0, 16, 448); lm = b.module(); lm.model.train();"
        "opt = torch.optim.AdamW(lm.model.parameters(), 1e-3); it = iter(dm.train_dataloader())\n"
        "for _ in range(3):\n"
        "    x, t = next(it); l = lm.loss_fn(lm.model(x), t, (448, 448))\n"
        "    opt.zero_grad(); l['total'].backward(); opt.step()\n"
        "print(b.peak_rss_mb())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


WHOLE_RUN = [  # configs/custom_cpu.yaml as a user would run it, on bccd at 256 px (S=8 divides the 16x16 map)
    "--config", "configs/custom_cpu.yaml", "--data.root", str(DATA / "bccd"), "--data.format", "voc",
    "--data.train_split", "trainval", "--data.val_split", "null", "--data.val_fraction", "0.15",
    "--data.classes", "RBC,WBC,Platelets", "--data.input_size", "256", "--model.grid_size", "8",
]  # fmt: skip


def whole_run(epochs: int, extra: list[str], profile: bool = False, keep_freed_memory: bool = True) -> dict:
    """CPU-seconds (process + loader workers, start to exit) of one ``gridyolo train`` run, per training
    image seen (epochs × training images): what a CPU user pays for an epoch of their data."""
    import json
    import resource
    import tempfile

    with tempfile.TemporaryDirectory() as project:
        cmd = [sys.executable, "-m", "gridyolo", "train", *WHOLE_RUN, "--trainer.max_epochs", str(epochs),
               "--project", project, "--name", "run", "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
        if profile:
            cmd += ["--trainer.profiler", "simple"]
        env = {**os.environ, "GRIDYOLO_KEEP_FREED_MEMORY": "1" if keep_freed_memory else "0"}
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        carved = json.loads((Path(project) / "run" / "val_split.json").read_text())
        train_images = int(carved["train_images"])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if profile:
        print(done.stdout[-6000:])
    images = epochs * train_images
    return {"cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "epochs": epochs, "train_images": train_images,
            "cpu_s_per_image": round(cpu / images, 4), "extra": " ".join(extra),
            "keep_freed_memory": keep_freed_memory}  # fmt: skip


def compare_variants(epochs: int, rounds: int, variants: dict[str, str]) -> None:
    """Whole runs of the shipped config and of each variant, interleaved round by round; medians."""
    runs: dict[str, list[dict]] = {"as shipped": [], **{name: [] for name in variants}}
    for _ in range(rounds):
        runs["as shipped"].append(whole_run(epochs, []))
        for name, extra in variants.items():
            runs[name].append(whole_run(epochs, extra.split()))
        print({name: [r["cpu_s_per_image"] for r in rows] for name, rows in runs.items()}, flush=True)
    medians = {name: round(statistics.median(r["cpu_s_per_image"] for r in rows), 4) for name, rows in runs.items()}
    base = medians["as shipped"]
    print({name: (m, round(m / base, 3)) for name, m in medians.items()})
    record("train_cpu_s_per_image_variants", medians, f"python benchmarks/bench_train.py --whole-run --epochs {epochs} "
           f"--rounds {rounds} " + " ".join(f"--variant '{n}={a}'" for n, a in variants.items()),
           ratios={name: round(m / base, 3) for name, m in medians.items()}, runs=runs,
           machine_note="quiet machine: nothing else running; variants interleaved in one run")  # fmt: skip


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--whole-run", action="store_true", help="only the whole-run CPU-seconds per image")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="print Lightning's simple profiler table")
    parser.add_argument("extra", nargs="*", help="more gridyolo train arguments (after --)")
    parser.add_argument("--rounds", type=int, default=1, help="whole runs side by side: malloc as is, then "
                        "gridyolo.allocator (GRIDYOLO_KEEP_FREED_MEMORY=0 / 1), this many times each")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="whole runs side by side: as shipped, then each variant's extra train arguments, "
                        "--rounds times (e.g. 'freeze8=--model.freeze_stride 8')")
    args = parser.parse_args()
    if args.whole_run and args.variant:
        compare_variants(args.epochs, args.rounds, dict(v.split("=", 1) for v in args.variant))
        return
    if args.whole_run and args.rounds > 1:
        pairs = [(whole_run(args.epochs, args.extra, keep_freed_memory=False),
                  whole_run(args.epochs, args.extra)) for _ in range(args.rounds)]  # fmt: skip
        for before, after in pairs:
            print("malloc as is", before, "\nkeep freed memory", after)
        before = round(statistics.median(p[0]["cpu_s_per_image"] for p in pairs), 4)
        after = round(statistics.median(p[1]["cpu_s_per_image"] for p in pairs), 4)
        record("train_cpu_s_per_image", after, f"python benchmarks/bench_train.py --whole-run --epochs {args.epochs} "
               f"--rounds {args.rounds}", before=before, ratio=round(after / before, 3), runs=pairs,
               machine_note="quiet machine: nothing else running; pairs side by side in one run")  # fmt: skip
        return
    if args.whole_run:
        row = whole_run(args.epochs, args.extra, args.profile)
        print(row)
        if not args.extra and not args.profile:
            record("train_cpu_s_per_image", row["cpu_s_per_image"], f"python benchmarks/bench_train.py --whole-run "
                   f"--epochs {args.epochs}", **row, machine_note="quiet machine: nothing else running")  # fmt: skip
        return
    torch.manual_seed(0)
    dm = datamodule(workers=1)
    rounds: dict[str, list[float]] = {"bare": [], "lightning": []}
    for _ in range(2):  # interleaved: bare, lightning, bare, lightning
        rounds["bare"].append(bare_loop(dm))
        rounds["lightning"].append(lightning_loop(dm))
    bare, lit = sorted(rounds["bare"])[-1], sorted(rounds["lightning"])[-1]  # best of 2 each: noise only slows
    print(f"train {SIZE}px batch {BATCH}: bare {rounds['bare']} img/s, lightning {rounds['lightning']} img/s")
    record(
        "train_vs_bare",
        round(lit / bare, 3),
        "python benchmarks/bench_train.py",
        bare_img_s=rounds["bare"],
        lightning_img_s=rounds["lightning"],
        input=SIZE,
        batch=BATCH,
    )
    lvs = loader_vs_step()
    print(f"loader alone {lvs['loader_img_s']} img/s vs training step {lvs['step_img_s']} img/s")
    record("loader_vs_step", lvs["ratio"], "python benchmarks/bench_train.py", **lvs, workers=1, input=SIZE)
    rss = rss_of_training_at_448_batch16()
    print(f"peak RSS, training at 448 batch 16: {rss:.0f} MB (this process {peak_rss_mb():.0f} MB)")
    record("train_peak_rss_mb", round(rss, 1), "python benchmarks/bench_train.py", input=448, batch=16)


if __name__ == "__main__":
    main()
