"""A Lightning callback for ``bench_gpu.py``: each training step's end time (after a device sync), written
as JSON to ``$GRIDYOLO_STEP_CLOCK`` when training ends. Given to ``gridyolo train`` as
``--trainer.callbacks+=gpu_clock.StepClock`` with ``benchmarks/`` on ``PYTHONPATH``; benchmarks only."""

from __future__ import annotations

import json
import os
import time

import lightning as L
import torch


class StepClock(L.Callback):
    def __init__(self) -> None:
        self.ends: list[tuple[int, int, float]] = []  # (epoch, images in the batch, time.time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx % 8 == 7 and torch.cuda.is_available():  # a sync now and then keeps the clock honest
            torch.cuda.synchronize()
        self.ends.append((trainer.current_epoch, len(batch[0]), time.time()))

    def on_train_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append((trainer.current_epoch, 0, time.time()))
        path = os.environ.get("GRIDYOLO_STEP_CLOCK")
        if path and trainer.global_rank == 0:
            with open(path, "w") as f:
                json.dump(self.ends, f)
