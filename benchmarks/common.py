"""Shared helpers: interleaved timing (A and B alternate, so machine noise hits both), medians,
machine facts, and the results file every benchmark adds its keys to."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results.json"
QUICK = os.environ.get("QUICK", "0") not in ("", "0")


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate; rounds alternate A, B, C, A, B, C..."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> dict:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def config_sha256(args: str) -> str | None:
    """sha256 of what a run's arguments resolve to: each ``configs/*.yaml`` they name, as it is now, and the
    arguments themselves. A run row keeps it; when the config changes later the row no longer matches
    (``tests/test_benchmark_records.py`` then asks for the row to be re-measured or marked stale)."""
    parts = args.split()
    files = [ROOT / part for part in parts if part.startswith("configs/") and part.endswith((".yaml", ".yml"))]
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    digest.update(" ".join(parts).encode())
    return digest.hexdigest()


def provenance(args: str | None = None) -> dict:
    """Where and from what a number was measured: the commit (and whether the tree had changes), the
    machine, when, and the resolved config's hash for a run."""
    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    out = {"commit": git("rev-parse", "--short=12", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "src",
           "configs", "benchmarks")), "machine": machine(), "recorded": time.strftime("%Y-%m-%d")}  # fmt: skip
    if args is not None:
        out["config_sha256"] = config_sha256(args)
    return out


def record(key: str, value: object, command: str, **details: object) -> None:
    """Add or replace ``key`` in results.json, with the command that produced it and its provenance."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = {"value": value, "command": command, **details, "provenance": provenance()}
    results["machine"] = machine()
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
