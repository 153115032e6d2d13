"""Inference on the CPU: bare forward in eager fp32, channels_last, frozen TorchScript, torch.compile and
ONNX Runtime (all interleaved), then end-to-end ``gridyolo detect`` on coco128 and vtest.avi against
the bare forward of the same model.

    python benchmarks/bench_inference.py          # QUICK=1: 448 only, no torch.compile
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DATA, QUICK, interleaved, peak_rss_mb, record

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from gridyolo.apps.detect import run_detect  # noqa: E402
from gridyolo.deploy.export import export_onnx  # noqa: E402
from gridyolo.deploy.predictor import load_predictor  # noqa: E402
from train_helpers import write_checkpoint  # noqa: E402  -- random weights: speed does not depend on them

ROUNDS = 3
BACKBONES = ("resnet18", "efficientnet_lite0", "efficientnet_lite0_s16", "darknet_tiny")


def variants(model: torch.nn.Module, batch: torch.Tensor, onnx_path: str | None, compile_: bool) -> dict:
    eager = model.eval()
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    cl_batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(cl_model)))
    out = {
        "eager": lambda: eager(batch),
        "channels_last": lambda: cl_model(cl_batch),
        "torchscript_frozen": lambda: frozen(cl_batch),
    }
    if compile_:
        compiled = torch.compile(cl_model)
        out["torch_compile"] = lambda: compiled(cl_batch)
    if onnx_path:
        import onnxruntime as ort

        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        array = batch.numpy()
        out["onnxruntime"] = lambda: session.run(None, {"images": array})
    return out


def forward_table(workdir: str) -> dict:
    try:
        import onnxruntime  # noqa: F401

        has_onnx = True
    except ImportError:
        has_onnx = False
    sizes = (448,) if QUICK else (448, 320)
    table = {}
    for name in BACKBONES:
        for size in sizes:
            ckpt = write_checkpoint(
                Path(workdir) / f"{name}{size}.ckpt",
                [f"c{i}" for i in range(20)],
                backbone=name,
                grid_size=7,
                input_size=size,
            )
            onnx_path = os.path.join(workdir, f"{name}{size}.onnx") if has_onnx else None
            if onnx_path:
                export_onnx(str(ckpt), onnx_path)
            model = load_predictor(str(ckpt), "torch", channels_last=False).model.detector  # the bare Detector
            for batch_size in (1, 8):
                batch = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
                with torch.no_grad():
                    times = interleaved(
                        variants(model, batch, onnx_path, compile_=not QUICK), repeats=5 if batch_size == 8 else 10
                    )
                row = {k: round(batch_size / v, 2) for k, v in times.items()}  # images / s
                table[f"{name}_{size}_b{batch_size}"] = row
                print(f"{name:19s} {size} b{batch_size}: " + "  ".join(f"{k} {v:.1f}/s" for k, v in row.items()))
    return table


def detect_vs_forward(workdir: str) -> dict:
    """End-to-end detect (read, pre-process, model, decode, draw, write) vs the bare forward of the
    backend that runs the model, for detect's CPU default (ONNX Runtime) and for torch."""
    name, size, batch = "efficientnet_lite0", 448, 8
    ckpt = write_checkpoint(
        Path(workdir) / "detect.ckpt",
        [f"c{i}" for i in range(80)],
        backbone=name,
        grid_size=7,
        input_size=size,
    )
    start = time.perf_counter()
    load_predictor(str(ckpt))  # the first load exports to ONNX (cached) and checks it against torch
    first_load_s = time.perf_counter() - start
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    results: dict = {"first_load_s": round(first_load_s, 2)}
    for backend in ("onnxruntime", "torch"):
        model = load_predictor(str(ckpt), backend=backend)
        for label, source, limit in (
            ("coco128", str(DATA / "coco128" / "train2017"), None),
            ("vtest", str(DATA / "video" / "vtest.avi"), 120 if QUICK else None),
        ):
            detect_rates, forward_rates, stages = [], [], []
            for _ in range(ROUNDS):  # detect and the bare forward alternate: drift hits both alike
                with torch.inference_mode():
                    forward = interleaved({"forward": lambda m=model: m.predict_raw(x)}, repeats=5, warmup=1)
                forward_rates.append(batch / forward["forward"])
                result = run_detect(str(ckpt), source, tempfile.mkdtemp(dir=workdir), batch_size=batch,
                                    device="cpu", max_frames=limit, progress=False, backend=backend)  # fmt: skip
                detect_rates.append(result["images"] / result["seconds"])
                stages.append(result["ms_per_image"])
            detect_rate, forward_rate = statistics.median(detect_rates), statistics.median(forward_rates)
            result["ms_per_image"] = {k: round(statistics.median(s[k] for s in stages), 3) for k in stages[0]}
            results[f"{label}_{backend}"] = {
                "detect_img_s": round(detect_rate, 2),
                "forward_img_s": round(forward_rate, 2),
                "ratio": round(detect_rate / forward_rate, 3),
                "ms_per_image": result["ms_per_image"],
                "images": result["images"],
                "backend": result["backend"],
            }
            print(
                f"detect {label} ({backend}): {detect_rate:.1f} img/s vs its forward {forward_rate:.1f} img/s "
                f"({detect_rate / forward_rate:.2f}x); stages {result['ms_per_image']}"
            )
    return results


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        os.environ["GRIDYOLO_CACHE"] = os.path.join(workdir, "cache")  # a cold cache: first_load_s is real
        table = forward_table(workdir)
        key = "efficientnet_lite0_448_b8"
        exports = {k: v for k, v in table[key].items() if k in ("torchscript_frozen", "onnxruntime", "torch_compile")}
        best = max(exports, key=exports.get)
        record(
            "export_speedup",
            round(exports[best] / table[key]["eager"], 3),
            "python benchmarks/bench_inference.py",
            fastest=best,
            model=key,
            images_per_s=table,
        )
        detect = detect_vs_forward(workdir)
        record(
            "detect_vs_forward",
            detect["coco128_onnxruntime"]["ratio"],
            "python benchmarks/bench_inference.py",
            detail=detect,
            note="efficientnet_lite0 448, batch 8, CPU, detect's default backend (onnxruntime); ratio of "
            "images/s, detect's loop time (the one-off ONNX export + check is first_load_s)",
        )
    rss = peak_rss_mb()
    print(f"peak RSS of this process (forward table + detect): {rss:.0f} MB")
    record("detect_peak_rss_mb", round(rss, 1), "python benchmarks/bench_inference.py")


if __name__ == "__main__":
    main()
