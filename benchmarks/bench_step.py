"""The host side of a training step: what one Lightning step of ``gridyolo train`` does outside the model's
forward, the backward pass and the optimizer's update (moving the targets, the loss and its target
assignment, the loss check, logging, the EMA, Lightning's own loop), as wall time, operator dispatches and
the operators that make a GPU wait (device reads: ``item`` / ``bool`` / ``float`` of a tensor, boolean-mask
indexing, ``unique``...), counted with ``torch.profiler`` on the CPU.

The shipped COCO config (``configs/coco_resnet50.yaml``: 448 px, batch 64, S=7, B=2, 80 classes, EMA,
gradient clipping) on real coco128 batches with its augmentation, held in memory (no loader). The
backbone defaults to ResNet-18 here (a ResNet-50 step at batch 64 takes ~85 s on 2 cores; the host side
does not depend on it but for the EMA's tensor count). ``--before`` measures another checkout beside.

    python benchmarks/bench_step.py [--before <checkout>/src] [--backbone resnet18] [--steps 4]
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

CONFIG = ROOT / "configs" / "coco_resnet50.yaml"
# operators after which a CUDA host waits for the device: reading a value (item, bool(), float(), if t),
# sizes known only on the device (nonzero: boolean-mask indexing; unique; masked_select)
DEVICE_READS = {"aten::item", "aten::is_nonzero", "aten::_local_scalar_dense", "aten::nonzero", "aten::unique",
                "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::masked_select",
                "aten::nonzero_numpy"}  # fmt: skip
# the optimizer's step runs Lightning's closure (training_step, backward) inside: ops in the closure but
# outside the forward and the backward are the host side's, like those outside the optimizer's step
REGIONS = ("gy::model_forward", "gy::backward", "gy::closure", "gy::optimizer_update")
GPU_STEP_MS = 64 / 1256 * 1000  # ResNet-50 448 batch 64, forward + loss + backward + SGD on the H200 (shared/gpu)


def child(backbone: str, steps: int, profile_step: int) -> dict:
    import lightning as L
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from gridyolo.data.datamodule import DetectionDataModule
    from gridyolo.data.transforms import AugmentConfig
    from gridyolo.training.cli import ProgressBar
    from gridyolo.training.module import GridYoloModule

    torch.manual_seed(0)
    cfg = yaml.safe_load(CONFIG.read_text())
    d, m = cfg["data"], cfg["model"]
    data = DetectionDataModule(str(DATA / "coco128"), "coco", "train2017", "train2017", input_size=d["input_size"],
                               augment=AugmentConfig(**d.get("augment", {})), batch_size=d["batch_size"],
                               num_workers=0, check_images=False)  # fmt: skip
    data.setup()
    loader = iter(data.train_dataloader())
    batches = [next(loader) for _ in range(2)]
    batches = [batches[i % 2] for i in range(steps)]
    module = GridYoloModule(backbone=backbone, weights=None, grid_size=m["grid_size"], num_boxes=m["num_boxes"],
                            head_channels=m["head_channels"], class_names=data.class_names,
                            category_ids=data.category_ids, input_size=d["input_size"], optimizer=m["optimizer"],
                            lr=m["lr"], weight_decay=m["weight_decay"], backbone_lr_factor=m["backbone_lr_factor"],
                            ema_decay=m["ema_decay"], channels_last=m.get("channels_last", False))  # fmt: skip
    times: dict[str, list[float]] = {"forward": [], "backward": [], "update": [], "step": []}
    clock: dict[str, float] = {}

    def timed(name: str, fn, scope: str):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            with record_function(scope):
                out = fn(*args, **kwargs)
            clock[name] = clock.get(name, 0.0) + time.perf_counter() - start
            return out

        return wrapper

    module.model.forward = timed("forward", module.model.forward, "gy::model_forward")
    module.backward = timed("backward", module.backward, "gy::backward")
    state: dict = {"last": None, "prof": None, "events": []}

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            optimizer = trainer.optimizers[0]
            step = optimizer.step

            def update(closure=None, **kwargs):  # the update alone: the closure (forward, backward) runs inside
                inner = {}

                def timed_closure():
                    start = time.perf_counter()
                    with record_function("gy::closure"):
                        out = closure()
                    inner["s"] = time.perf_counter() - start
                    return out

                start = time.perf_counter()
                with record_function("gy::optimizer_update"):
                    out = step(closure=timed_closure, **kwargs)
                clock["update"] = clock.get("update", 0.0) + time.perf_counter() - start - inner.get("s", 0.0)
                return out

            optimizer.step = update

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            # a profiled window is one whole step: its training step, EMA, Lightning's logging after it
            if state["prof"] is not None:
                state["prof"].__exit__(None, None, None)
                state["events"].append(state["prof"].events())
                state["prof"] = None
            if batch_idx in (profile_step, profile_step + 1):
                # the second profiled step falls between the progress bar's reads of the loss values, as most
                # GPU steps do (a checkout without ``progress_refresh_s`` reads them every step anyway)
                pl_module.progress_refresh_s = 0.5 if batch_idx == profile_step else float("inf")
                state["prof"] = profile(activities=[ProfilerActivity.CPU])
                state["prof"].__enter__()

        def on_train_end(self, trainer, pl_module):
            self.on_train_batch_start(trainer, pl_module, None, -1)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            if state["last"] is not None and 2 <= batch_idx < profile_step:  # 0, 1: warm-up; the last two: profiled
                times["step"].append(now - state["last"])
                for name in ("forward", "backward", "update"):
                    times[name].append(clock.get(name, 0.0))
            clock.clear()
            state["last"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as logs:
        trainer = L.Trainer(max_steps=steps, accelerator="cpu", precision=32, limit_val_batches=0,
                            logger=L.pytorch.loggers.CSVLogger(logs), enable_checkpointing=False,
                            enable_model_summary=False, enable_progress_bar=True,
                            gradient_clip_val=cfg["trainer"].get("gradient_clip_val"),
                            callbacks=[Probe(), ProgressBar()])  # fmt: skip
        held = torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)
        trainer.fit(module, train_dataloaders=held)
    shown, between = (count_ops(events) for events in state["events"])
    return {"times": times, **between, "shown": shown}


def count_ops(events) -> dict:
    """Top-level operator dispatches (an ``aten::`` op not inside another) by region, and the device reads
    of the host side (an outermost read op: ``item`` counts once, not again for its ``_local_scalar_dense``)."""

    def scopes(event) -> tuple[str, bool, bool]:
        region, nested, in_read, parent = None, False, False, event.cpu_parent
        while parent is not None:
            nested = nested or parent.name.startswith("aten::")
            in_read = in_read or parent.name in DEVICE_READS
            if parent.name in REGIONS and region is None:
                region = parent.name
            parent = parent.cpu_parent
        return ("host" if region in (None, "gy::closure") else region), nested, in_read

    dispatches: dict[str, int] = {}
    reads: dict[str, int] = {}
    host_ops: dict[str, int] = {}
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        where, nested, in_read = scopes(event)
        if where == "host" and event.name in DEVICE_READS and not in_read:
            reads[event.name] = reads.get(event.name, 0) + 1
        if nested:
            continue
        dispatches[where] = dispatches.get(where, 0) + 1
        if where == "host":
            host_ops[event.name] = host_ops.get(event.name, 0) + 1
    top = dict(sorted(host_ops.items(), key=lambda kv: -kv[1])[:12])
    return {"dispatches": dispatches, "device_reads": reads, "host_top_ops": top}


def summarize(run: dict) -> dict:
    t = {k: statistics.median(v) * 1e3 for k, v in run["times"].items()}
    host = t["step"] - t["forward"] - t["backward"] - t["update"]
    return {"step_ms": round(t["step"], 1), "forward_ms": round(t["forward"], 1),
            "backward_ms": round(t["backward"], 1), "update_ms": round(t["update"], 1), "host_ms": round(host, 1),
            "host_share_cpu": round(host / t["step"], 4), "host_over_h200_step": round(host / GPU_STEP_MS, 3),
            "host_dispatches": run["dispatches"].get("host", 0), "dispatches": run["dispatches"],
            "device_reads": sum(run["device_reads"].values()), "device_reads_by_op": run["device_reads"],
            "host_top_ops": run["host_top_ops"], "values_shown_step": {
                "host_dispatches": run["shown"]["dispatches"].get("host", 0),
                "device_reads": sum(run["shown"]["device_reads"].values()),
                "device_reads_by_op": run["shown"]["device_reads"]}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=None, help="the src folder of another checkout to measure beside")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--steps", type=int, default=6, help="steps per run: 2 warm-up, the last 2 profiled, "
                        "those between timed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.backbone, args.steps, profile_step=args.steps - 2)))
        return
    if not (DATA / "coco128").is_dir():
        print(f"skipped: {DATA / 'coco128'} is absent (the shared data)")
        return
    trees = {"after": ROOT / "src"}
    if args.before:
        trees = {"before": Path(args.before).resolve(), **trees}
    rows = {}
    for name, src in trees.items():
        cmd = [sys.executable, __file__, "--child", "--backbone", args.backbone, "--steps", str(args.steps)]
        done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True,
                              cwd=ROOT)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{name}: {done.stderr[-3000:]}")
        rows[name] = summarize(json.loads(done.stdout.strip().splitlines()[-1]))
        print(name, json.dumps(rows[name]), flush=True)
    after = rows["after"]
    value = {"host_ms": after["host_ms"], "host_dispatches": after["host_dispatches"],
             "device_reads": after["device_reads"], "host_share_cpu": after["host_share_cpu"],
             "host_over_h200_step": after["host_over_h200_step"]}  # fmt: skip
    if "before" in rows:
        before = rows["before"]
        value.update(before_host_ms=before["host_ms"], before_host_dispatches=before["host_dispatches"],
                     before_device_reads=before["device_reads"])  # fmt: skip
    command = "python benchmarks/bench_step.py" + (" --before <checkout>/src" if args.before else "")
    record("train_step_host", value, command, config=str(CONFIG.relative_to(ROOT)), backbone=args.backbone,
           batch=64, input=448, h200_step_ms=round(GPU_STEP_MS, 1), runs=rows)  # fmt: skip


if __name__ == "__main__":
    main()
