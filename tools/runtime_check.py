"""The torch-free runtime install, end to end (``make test-runtime``).

Run with the full install's Python; ``RUNTIME_PYTHON`` is the Python of a venv where only
``pip install .`` (no extras) went. Here: a synthetic COCO split and a random-weights model exported
to ONNX; there: ``gridyolo detect`` and ``gridyolo eval`` of that ONNX file, which must give the
numbers the full install gives for the same file, without torch being installed at all.

    python tools/runtime_check.py .venv-runtime/bin/python /tmp/runtime-check
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from gridyolo.apps.cli import main
from gridyolo.data.synthetic import SHAPES, write_synthetic_coco
from gridyolo.models import build_detector
from gridyolo.models.checkpoint import ModelMeta


def random_checkpoint(path: Path) -> Path:
    """A small random model whose head is spread out, so that it finds (wrong) boxes to compare."""
    torch.manual_seed(0)
    model = build_detector("darknet_tiny", len(SHAPES), 4, 2, None, 32, "pool", 128).eval()
    torch.nn.init.normal_(model.head.predict.weight, std=0.3)
    torch.nn.init.normal_(model.head.predict.bias, std=1.0)
    meta = ModelMeta("darknet_tiny", 4, 2, 32, list(SHAPES), [1, 2, 3, 4], 128, "letterbox",
                     model.mean.flatten().tolist(), model.std.flatten().tolist())  # fmt: skip
    torch.save({"gridyolo": meta.to_dict(), "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               path)  # fmt: skip
    return path


def run(python: str, args: list[str]) -> str:
    done = subprocess.run([python, "-m", "gridyolo", *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"runtime check: gridyolo {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def check(runtime_python: str, work: Path) -> None:
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('torch', 'torchvision', 'onnx')))"
    if subprocess.run([runtime_python, "-c", probe]).returncode != 0:
        raise SystemExit("runtime check: the runtime venv has torch, torchvision or onnx installed")
    work.mkdir(parents=True, exist_ok=False)
    root = write_synthetic_coco(str(work / "data"), {"val": 24}, seed=3)
    onnx_file = work / "model.onnx"
    if main(["export", "--weights", str(random_checkpoint(work / "model.ckpt")), "--format", "onnx", "--out",
             str(onnx_file)]) != 0:  # fmt: skip
        raise SystemExit("runtime check: the ONNX export failed")
    evaluate = ["eval", "--weights", str(onnx_file), "--data", root, "--format", "coco", "--split", "val", "--json",
                "--backend", "pycocotools"]  # fmt: skip
    there = json.loads(run(runtime_python, evaluate))
    here = json.loads(run(sys.executable, evaluate))
    keys = ("map", "map50", "map75", "detections", "images", "f1_threshold")
    if any(there.get(k) != here.get(k) for k in keys) or there["detections"] == 0:
        raise SystemExit(f"runtime check: eval differs: runtime {[there.get(k) for k in keys]}, "
                         f"full {[here.get(k) for k in keys]}")  # fmt: skip
    detect = ["detect", "--weights", str(onnx_file), "--source", str(Path(root) / "val"), "--save-json", "--quiet",
              "--conf", "0.02"]
    outputs = []
    for python, name in ((runtime_python, "runtime"), (sys.executable, "full")):
        run(python, [*detect, "--out", str(work / name)])
        outputs.append((work / name / "predictions.jsonl").read_text())
    if outputs[0] != outputs[1]:
        raise SystemExit("runtime check: detect's predictions.jsonl differs between the runtime and the full install")
    info = run(runtime_python, ["export", "--info", str(onnx_file)])
    if "classes          4: circle, square, triangle, cross" not in info:
        raise SystemExit("runtime check: export --info of the ONNX file does not show its classes")
    refused = subprocess.run([runtime_python, "-m", "gridyolo", "export", "--weights", str(work / "model.ckpt")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    if refused.returncode != 2 or "gridyolo[torch]" not in refused.stderr or "Traceback" in refused.stderr:
        raise SystemExit(f"runtime check: export without torch should name gridyolo[torch]:\n{refused.stderr}")
    boxes = sum(len(json.loads(line)["labels"]) for line in outputs[0].splitlines())
    if boxes == 0:
        raise SystemExit("runtime check: detect found no box to compare")
    print(f"runtime check: detect ({boxes} boxes on 24 images) and eval (mAP {there['map']:.4f}, "
          f"{there['detections']} detections) of an ONNX file without torch: the same as the full install")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    check(sys.argv[1], Path(sys.argv[2]))
