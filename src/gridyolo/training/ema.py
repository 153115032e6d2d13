"""The EMA of the weights (validated and saved in checkpoints), updated without reading the device.

``torch.optim.swa_utils.AveragedModel`` holds the averaged copy and its update count ``n_averaged`` (a
buffer, so checkpoints carry it). Its ``update_parameters`` reads that count from the device twice per
call (``n_averaged == 0``, ``> 0``) and regroups every tensor each step; on a GPU each read waits for the
queued work. ``EmaUpdater`` does the same arithmetic with the count kept on the host, read once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, tau: float, updates_before: int) -> float:
    """The decay of the ``updates_before + 1``-th update: a warm-up from 0 to ``decay`` over ~``tau``
    updates, as in Ultralytics."""
    return decay * (1 - math.exp(-float(updates_before) / tau))


def ema_multi_avg_fn(decay: float, tau: float):
    """``AveragedModel``'s ``multi_avg_fn`` (for a direct ``update_parameters`` call): the same update."""

    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        if not ema_params[0].is_floating_point():  # BatchNorm's num_batches_tracked: copy, do not average
            torch._foreach_copy_(ema_params, params)
            return
        torch._foreach_lerp_(ema_params, params, 1 - ema_decay(decay, tau, int(num_averaged)))

    return update


class EmaUpdater:
    """``AveragedModel.update_parameters`` with ``use_buffers=True`` and ``ema_multi_avg_fn``'s decay: the
    first update copies the model, later ones lerp floating tensors and copy the others; ``n_averaged``
    still counts on the device (for checkpoints), and the host's count follows it."""

    def __init__(self, decay: float, tau: float) -> None:
        self.decay, self.tau = decay, tau
        self.updates: int | None = None
        self._pairs: tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None = None

    def reset(self) -> None:
        """Read the count and the tensors again (after a checkpoint was restored or the model moved)."""
        self.updates, self._pairs = None, None

    def update(self, ema: AveragedModel, model: nn.Module) -> None:
        if self.updates is None:
            self.updates = int(ema.n_averaged)  # the one device read
        if self._pairs is None:
            averaged = [t.detach() for t in (*ema.module.parameters(), *ema.module.buffers())]
            current = [t.detach() for t in (*model.parameters(), *model.buffers())]
            floating = [a.is_floating_point() for a in averaged]
            self._pairs = (
                [a for a, f in zip(averaged, floating) if f], [c for c, f in zip(current, floating) if f],
                [a for a, f in zip(averaged, floating) if not f], [c for c, f in zip(current, floating) if not f],
            )  # fmt: skip
        ema_floats, floats, ema_others, others = self._pairs
        with torch.no_grad():
            if self.updates == 0:
                torch._foreach_copy_(ema_floats + ema_others, floats + others)
            else:
                if ema_floats:
                    torch._foreach_lerp_(ema_floats, floats, 1 - ema_decay(self.decay, self.tau, self.updates))
                if ema_others:
                    torch._foreach_copy_(ema_others, others)
            ema.n_averaged += 1
        self.updates += 1
