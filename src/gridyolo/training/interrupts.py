"""A Ctrl-C that is never lost and never breaks what it interrupts.

Python's own handler raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT
arrives: inside a library that clears pending exceptions (a C extension calling ``PyObject_HasAttr`` or
``PyDict_GetItem`` while a Python ``__getattr__`` / ``__eq__`` runs, an ``except BaseException``), the
interrupt is lost and the run trains on; inside code that holds a lock or a queue's count (a logger's
writer thread, a checkpoint write), the process can hang at shutdown. During ``fit``, ``CtrlC`` only
records the request, and raises ``KeyboardInterrupt`` at the next batch, epoch or validation boundary,
where Lightning handles it cleanly. A second Ctrl-C raises at once (for a step that never ends).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import lightning as L


class CtrlC(L.Callback):
    """Installs its SIGINT handler for ``fit`` (``install`` / ``restore``); a request is raised as
    ``KeyboardInterrupt`` at the next batch, epoch or validation boundary."""

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
        if self.requested:  # the second Ctrl-C: now
            raise KeyboardInterrupt
        self.requested = True  # raised at the next boundary (_raise_if_requested)

    def _raise_if_requested(self, *args: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_start = on_train_batch_end = _raise_if_requested
    on_validation_batch_start = on_validation_batch_end = _raise_if_requested
    on_train_epoch_start = on_train_epoch_end = on_validation_end = _raise_if_requested

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.requested = False  # handled: Lightning shuts down now
