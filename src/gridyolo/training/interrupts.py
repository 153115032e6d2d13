"""A Ctrl-C that no library can swallow.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives. Some
places clear any pending exception, KeyboardInterrupt included (a C extension that calls
``PyObject_HasAttr`` or ``PyDict_GetItem`` on an object whose Python ``__getattr__`` / ``__eq__`` was
running, an ``except BaseException`` in a library), and then the run trains on as if nothing was
pressed. ``CtrlC`` remembers the request: the handler raises as Python's own does, and every batch
boundary raises it again until Lightning has handled it, so a request is never lost, only delayed to
the next step at most.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import lightning as L


class CtrlC(L.Callback):
    """Installs its SIGINT handler for ``fit`` (``install`` / ``restore``) and re-raises a request
    that was swallowed at the next batch boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Take over SIGINT if Python's default handler has it (a shell's background job ignores it:
        that choice is kept) and this is the main thread (only it may set handlers)."""
        if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True

    def restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def _raise_if_requested(self, *args: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_start = on_train_batch_end = _raise_if_requested
    on_validation_batch_start = on_validation_batch_end = _raise_if_requested
    on_train_epoch_start = on_train_epoch_end = on_validation_end = _raise_if_requested

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.requested = False  # handled: Lightning shuts down now
