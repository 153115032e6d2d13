"""Where gridyolo keeps what it can recompute: ``$GRIDYOLO_CACHE``, else ``~/.cache/gridyolo``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("GRIDYOLO_CACHE") or Path.home() / ".cache" / "gridyolo")
