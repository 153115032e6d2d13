"""Whole-process wall time of ``gridyolo detect`` (issue 13): one image, and the 128 coco128 images,
against ``python -c "import torch, torchvision"`` (the floor any torch program pays), interleaved
round by round, medians.

    python benchmarks/bench_startup.py                       # this checkout
    python benchmarks/bench_startup.py --before ../old/src   # and another checkout, side by side

The model is what ``configs/bccd_lite0.yaml`` trains (EfficientNet-Lite0 stride 16, 320 px, S=20, head
192), with random weights (speed does not depend on them); detect runs with its CPU default (ONNX
Runtime) from a warm export cache, as every run after the first does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, QUICK, ROOT, record

sys.path.insert(0, str(ROOT / "tests"))
from train_helpers import write_checkpoint  # noqa: E402

# the command line of either layout (before the package was layered, main lived in gridyolo.cli)
RUN = ("import sys\ntry:\n    from gridyolo.apps.cli import main\n"
       "except ImportError:\n    from gridyolo.cli import main\n"
       "sys.argv[0] = 'gridyolo'\nraise SystemExit(main())")  # fmt: skip


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="the src folder of another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=3 if QUICK else 5)
    args = parser.parse_args()
    folder = DATA / "coco128" / "train2017"
    if not folder.is_dir():
        sys.exit(f"needs {folder} (../shared/data)")
    image = sorted(folder.glob("*.jpg"))[0]
    sources = {"src": str(ROOT / "src")}
    if args.before:
        sources["before"] = str(Path(args.before).resolve())
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        weights = write_checkpoint(work / "bccd_like.ckpt", ["RBC", "WBC", "Platelets"],
                                   backbone="efficientnet_lite0_s16", grid_size=20, input_size=320,
                                   resize_mode="stretch", head_channels=192)  # fmt: skip
        envs = {name: {**os.environ, "PYTHONPATH": path, "GRIDYOLO_CACHE": str(work / f"cache_{name}")}
                for name, path in sources.items()}  # fmt: skip
        counter = iter(range(10**6))

        def detect(source: Path) -> list[str]:
            return [sys.executable, "-c", RUN, "detect", "--weights", str(weights), "--source", str(source),
                    "--out", str(work / f"out{next(counter)}"), "--quiet", "--device", "cpu"]  # fmt: skip

        for env in envs.values():  # the first run exports to ONNX and checks it; every later run reuses it
            timed(detect(image), env)
        candidates = {"import torch, torchvision": ([sys.executable, "-c", "import torch, torchvision"], os.environ)}
        for name, env in envs.items():
            candidates[f"{name}: detect 1 image"] = (None, env, image)
            candidates[f"{name}: detect 128 images"] = (None, env, folder)
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.repeats):
            for name, spec in candidates.items():
                command = spec[0] if spec[0] is not None else detect(spec[2])
                times[name].append(timed(command, spec[1]))
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    floor = medians["import torch, torchvision"]
    for name, value in medians.items():
        print(f"{name:32s} {value:6.2f} s  ({value / floor:.2f}x the torch import)")
    result = {"median_s": medians, "repeats": args.repeats,
              "one_image_vs_torch_import": round(medians["src: detect 1 image"] / floor, 3)}  # fmt: skip
    if args.before:
        result["before_one_image_vs_torch_import"] = round(medians["before: detect 1 image"] / floor, 3)
        result["folder_speedup_vs_before"] = round(
            medians["before: detect 128 images"] / medians["src: detect 128 images"], 3
        )
        print(f"128-image folder: {result['folder_speedup_vs_before']:.2f}x faster than --before")
    record("detect_startup", result["one_image_vs_torch_import"], "python benchmarks/bench_startup.py"
           + (" --before <checkout>/src" if args.before else ""), detail=result)  # fmt: skip


if __name__ == "__main__":
    main()
