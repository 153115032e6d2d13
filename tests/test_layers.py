"""The package's layers: imports only point down, and the detect / eval path stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import gridyolo

PACKAGE = Path(gridyolo.__file__).parent
# bottom to top (docs/ARCHITECTURE.md); a module may import its own layer and the layers below it
LAYERS = [("errors", "input_guards", "files", "allocator", "weights_kind"), ("core",), ("models",), ("data",),
          ("deploy",), ("evaluation",), ("training",), ("apps", "__main__")]  # fmt: skip
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str:
    """``gridyolo.deploy.export`` -> ``deploy``; ``gridyolo`` itself -> ``errors`` (the version only)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "errors"


def _gridyolo_imports(path: Path) -> set[str]:
    """Every ``gridyolo...`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "gridyolo"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gridyolo":
            package = node.module == "gridyolo"  # from gridyolo import x: the module gridyolo.x
            found |= {f"{node.module}.{alias.name}" for alias in node.names} if package else {node.module}
    return found


def test_every_module_sits_in_a_layer_and_imports_point_down():
    upward = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        module = ".".join(("gridyolo", *path.relative_to(PACKAGE).with_suffix("").parts))
        own = _layer(module) if module != "gridyolo.__init__" else "errors"
        assert own in RANK, f"{path}: not in a layer of LAYERS"
        for imported in _gridyolo_imports(path):
            target = _layer(imported) if imported != "gridyolo.__version__" else "errors"
            assert target in RANK, f"{path} imports {imported}, which is in no layer"
            if RANK[target] > RANK[own]:
                upward.append(f"{module} -> {imported}")
    assert upward == [], "imports that point up a layer:\n" + "\n".join(upward)


def test_the_detect_and_eval_path_imports_no_training_stack():
    """What ``gridyolo detect`` and ``gridyolo eval`` import before they open weights (checked in a fresh
    interpreter): not even torch, so that an ``.onnx`` file runs on the torch-free runtime install
    (``test_torch_free.py`` runs it with torch refused)."""
    code = (
        "import sys, json\n"
        "import gridyolo.apps.cli, gridyolo.apps.detect, gridyolo.evaluation.runner, gridyolo.deploy.predictor\n"
        "import gridyolo.deploy.onnx_runner, gridyolo.evaluation.predictions, gridyolo.apps.evaluate\n"
        "import gridyolo.evaluation.scoring\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(json.loads(done.stdout))
    assert "gridyolo" in loaded and "cv2" in loaded  # the check itself works
    for heavy in ("torch", "torchvision", "lightning", "pytorch_lightning", "albumentations", "jsonargparse", "onnx",
                  "onnxruntime", "matplotlib", "tensorboard"):  # fmt: skip
        assert heavy not in loaded, f"the detect/eval path imports {heavy}"
