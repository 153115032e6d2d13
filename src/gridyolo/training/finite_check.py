"""A NaN or infinite loss stops training, without a device read every step on a GPU.

``if not torch.isfinite(loss)`` waits for the GPU to finish the forward pass every step, so the host can
no longer queue work ahead of it. On a GPU the flag is copied to the host without blocking and read one
step later (by then it is there); the pending flag is also read before any checkpoint is written and
before validation, so no checkpoint or validation ever holds a step that the delay let through. On the
CPU there is nothing to wait for: the check is immediate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gridyolo.errors import GridyoloError


class NonFiniteLossError(GridyoloError):
    """The loss became NaN or infinite; training stops and the last good checkpoint stays."""


class FiniteLossCheck:
    def __init__(self) -> None:
        self._pending: tuple | None = None

    def check(self, losses: dict[str, Tensor], epoch: int, step: int) -> None:
        """Raise ``NonFiniteLossError`` for this step's ``losses`` (on a GPU: at the next call or
        ``raise_pending``). ``losses`` is the loss's dict of named scalar terms with ``total``."""
        finite = torch.isfinite(losses["total"].detach())
        if finite.device.type != "cuda":
            if not finite:
                _raise(losses, epoch, step)
            return
        self.raise_pending()
        flag = finite.to("cpu", non_blocking=True)  # into page-locked memory, read when the event has passed
        event = torch.cuda.Event()
        event.record()
        self._pending = (flag, event, {k: v.detach() for k, v in losses.items()}, epoch, step)

    def raise_pending(self) -> None:
        """Wait for the last GPU step's flag (that step only, not the work queued since) and raise if set."""
        if self._pending is None:
            return
        flag, event, losses, epoch, step = self._pending
        self._pending = None
        event.synchronize()
        if not bool(flag):
            _raise(losses, epoch, step)


def _raise(losses: dict[str, Tensor], epoch: int, step: int) -> None:
    terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
    raise NonFiniteLossError(
        f"non-finite loss at epoch {epoch} step {step}: {terms}; "
        "training stopped, the last good checkpoint is kept (try a lower --model.lr)"
    )
