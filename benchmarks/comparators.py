"""Other libraries measured beside gridyolo, installed for the benchmarks only, never as a dependency.

Ultralytics (AGPL-3.0) goes into ``.bench-deps/`` at the project root (git-ignored) with ``pip install
--target --no-deps``: its own pins would replace the project's OpenCV build (``opencv-python`` beside the
headless one) and move numpy. What it imports and the venv lacks comes along by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import ROOT

DEPS = ROOT / ".bench-deps"
ULTRALYTICS = ["ultralytics==8.3.160", "ultralytics-thop==2.2.3"]
ULTRALYTICS_IMPORTS = ["psutil", "py-cpuinfo", "requests", "pandas", "pytz", "urllib3", "idna", "certifi",
                       "charset-normalizer"]  # fmt: skip


def ultralytics_env(work: Path) -> dict[str, str] | None:
    """The environment of a subprocess that imports Ultralytics (installing it first when missing), or
    ``None`` with a line saying why when it cannot be installed (no package index)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DEPS), str(ROOT / "src")]), "YOLO_OFFLINE": "1",
           "YOLO_CONFIG_DIR": str(work / "ultralytics-config"), "NO_ALBUMENTATIONS_UPDATE": "1"}  # fmt: skip
    probe = [sys.executable, "-c", "import ultralytics, pandas, psutil, cpuinfo"]
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return env
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(DEPS),
               *ULTRALYTICS, *ULTRALYTICS_IMPORTS]  # fmt: skip
    done = subprocess.run(install, capture_output=True, text=True)
    if done.returncode != 0 or subprocess.run(probe, env=env, capture_output=True).returncode != 0:
        print(f"comparator skipped: Ultralytics could not be installed into {DEPS} ({done.stderr.strip()[-200:]})")
        return None
    return env
