"""Whole-process wall and CPU time of ``gridyolo detect`` on one image and on the 128 coco128 images,
for each weights format (checkpoint, ONNX, torch.export ``.pt2``, its AOTInductor package), side by
side with ``python -c "import torch, torchvision"`` (the floor any torch program pays), interleaved
round by round, medians. The ONNX file runs on the torch-free path (no torch import at all).

    python benchmarks/bench_startup.py                       # this checkout
    python benchmarks/bench_startup.py --before ../old/src   # and another checkout's checkpoint path

The model is what ``configs/bccd_lite0.yaml`` trains (EfficientNet-Lite0 stride 16, 320 px, S=20, head
192), with random weights (speed does not depend on them); a checkpoint runs with detect's CPU default
(ONNX Runtime) from a warm export cache, as every run after the first does.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="the src folder of another checkout to compare with")
    parser.add_argument("--repeats", type=int, default=3 if QUICK else 5)
    args = parser.parse_args()
    folder = DATA / "coco128" / "train2017"
    if not folder.is_dir():
        sys.exit(f"needs {folder} (../shared/data)")
    image = sorted(folder.glob("*.jpg"))[0]
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        checkpoint = write_checkpoint(work / "bccd_like.ckpt", ["RBC", "WBC", "Platelets"],
                                      backbone="efficientnet_lite0_s16", grid_size=20, input_size=320,
                                      resize_mode="stretch", head_channels=192)  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GRIDYOLO_CACHE": str(work / "cache")}
        export = [sys.executable, "-c", RUN, "export", "--weights", str(checkpoint)]
        subprocess.run([*export, "--format", "onnx", "--out", str(work / "m.onnx")], env=env, check=True)
        subprocess.run([*export, "--format", "pt2", "--out", str(work / "m.pt2")], env=env, check=True)
        weights = {"checkpoint": (checkpoint, env), "onnx (torch-free)": (work / "m.onnx", env),
                   "pt2": (work / "m.pt2", env)}  # fmt: skip
        if (work / "m.aoti.pt2").exists():
            weights["aoti"] = (work / "m.aoti.pt2", env)
        if args.before:
            weights["before: checkpoint"] = (checkpoint, {**env, "PYTHONPATH": str(Path(args.before).resolve()),
                                                          "GRIDYOLO_CACHE": str(work / "cache_before")})  # fmt: skip
        counter = iter(range(10**6))

        def detect(name: str, path: Path, source: Path) -> list[str]:
            flags = [] if name.startswith("before") else ["--trust-compiled"]  # an older CLI lacks the flag
            return [sys.executable, "-c", RUN, "detect", "--weights", str(path), "--source", str(source),
                    "--out", str(work / f"out{next(counter)}"), "--quiet", "--device", "cpu", *flags]  # fmt: skip

        for name, (path, run_env) in weights.items():  # a checkpoint's first run exports to ONNX; later reuse it
            timed(detect(name, path, image), run_env)
        candidates = {"import torch, torchvision": ([sys.executable, "-c", "import torch, torchvision"], os.environ)}
        for name, (path, run_env) in weights.items():
            candidates[f"{name}: 1 image"] = (lambda n=name, p=path: detect(n, p, image), run_env)
            candidates[f"{name}: 128 images"] = (lambda n=name, p=path: detect(n, p, folder), run_env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
        for _ in range(args.repeats):
            for name, (command, run_env) in candidates.items():
                times[name].append(timed(command() if callable(command) else command, run_env))
    wall = {name: round(statistics.median(t[0] for t in values), 3) for name, values in times.items()}
    cpu = {name: round(statistics.median(t[1] for t in values), 3) for name, values in times.items()}
    floor_wall, floor_cpu = wall["import torch, torchvision"], cpu["import torch, torchvision"]
    print(f"{'':34s} {'wall s':>7s} {'x':>6s} {'CPU s':>7s} {'x':>6s}   (x: of the torch import)")
    for name in candidates:
        w, c = wall[name], cpu[name]
        print(f"{name:34s} {w:7.2f} {w / floor_wall:6.2f} {c:7.2f} {c / floor_cpu:6.2f}")
    ratios = {name: {"wall": round(wall[name] / floor_wall, 3), "cpu": round(cpu[name] / floor_cpu, 3)}
              for name in candidates}  # fmt: skip
    result = {"median_wall_s": wall, "median_cpu_s": cpu, "vs_torch_import": ratios, "repeats": args.repeats}
    command = "python benchmarks/bench_startup.py" + (" --before <checkout>/src" if args.before else "")
    record("detect_startup", ratios["checkpoint: 1 image"]["wall"], command, detail=result)
    onnx = {"one_image": ratios["onnx (torch-free): 1 image"], "folder": ratios["onnx (torch-free): 128 images"]}
    record("detect_startup_onnx_cpu", onnx["one_image"]["cpu"], command, detail=onnx)


if __name__ == "__main__":
    main()
