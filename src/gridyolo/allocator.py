"""Keep freed tensor memory in the process instead of handing it back to the OS after every step.

glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB, adapting up to 32 MiB) with a
fresh ``mmap`` and ``munmap``s them on ``free``. A CPU training step allocates activations of tens to a
hundred MiB (EfficientNet-Lite0 at 256 px, batch 16: 100 MiB for one padded map), so every step
page-faults its whole working set in again: 130k-225k minor faults per step, about a third of a CPU
step's time spent in the kernel (BENCHMARKS.md, "Cheaper epochs"). Raising the mmap threshold and the
trim threshold keeps those blocks on the heap, where the next step reuses them; what the process holds
is its peak, as with PyTorch's CUDA caching allocator or jemalloc / tcmalloc, which PyTorch's CPU
performance guide recommends for the same reason.

Only glibc has ``mallopt``; elsewhere (macOS, Windows, musl) this does nothing. ``GRIDYOLO_KEEP_FREED_MEMORY=0``
in the environment leaves malloc as it is (to compare, or where memory is tighter than time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
KEEP_BELOW = 1 << 30  # blocks up to 1 GiB come from the heap; the heap is trimmed only above 1 GiB free

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks up to 1 GiB (see the module docstring). Safe to call
    more than once; DataLoader workers forked afterwards inherit it. Returns whether it applied."""
    global _applied
    if _applied is None:
        _applied = False
        wanted = os.environ.get("GRIDYOLO_KEEP_FREED_MEMORY", "1") != "0"
        if wanted and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, KEEP_BELOW)
                )
            except (OSError, AttributeError):
                _applied = False
    return _applied
