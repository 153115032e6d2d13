"""Opening a weights file never runs code: a pickle payload in any entry point is refused in one line."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from gridyolo.apps.cli import main
from gridyolo.errors import GridyoloError
from gridyolo.models.checkpoint import load_checkpoint
from gridyolo.weights_kind import weights_format
from train_helpers import tiny_bccd, tiny_config, write_checkpoint

CLASSES = ["RBC", "WBC", "Platelets"]


class Payload:
    """Unpickling this calls ``os.system`` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    """A real gridyolo checkpoint with one extra payload entry (it would load and run normally with
    weights_only=False), a bare pickle renamed .torchscript, and the marker the payload would create."""
    marker = tmp_path / "PAYLOAD_RAN"
    clean = write_checkpoint(tmp_path / "clean.ckpt", CLASSES)
    checkpoint = torch.load(clean, weights_only=True)
    checkpoint["extra"] = Payload(marker)
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    (tmp_path / "evil.torchscript").write_bytes(pickle.dumps({"model": Payload(marker)}))
    torch.load(tmp_path / "evil.ckpt", weights_only=False)  # the payload is real: it does run when trusted
    assert marker.exists()
    marker.unlink()
    return tmp_path, marker


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gridyolo")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ["evil.ckpt", "evil.torchscript"])
@pytest.mark.parametrize(
    "command",
    [
        ["detect", "--source", "IMAGE", "--out", "OUT", "--quiet"],
        ["detect", "--source", "IMAGE", "--out", "OUT", "--quiet", "--backend", "torch"],
        ["eval", "--data", "DATA", "--format", "voc", "--split", "train"],
        ["export", "--out", "OUT/model.torchscript"],
        ["export", "--format", "onnx", "--out", "OUT/model.onnx"],
        ["explain", "--image", "IMAGE", "--out", "OUT"],
    ],
    ids=["detect", "detect-torch", "eval", "export", "export-onnx", "explain"],
)
def test_payload_never_runs(evil, bccd_root, capsys, command, name):
    tmp, marker = evil
    image = str(bccd_root / "JPEGImages" / "BloodImage_00000.jpg")
    data = tiny_bccd(tmp / "bccd", count=2)
    argv = [{"IMAGE": image, "DATA": str(data)}.get(a, a).replace("OUT", str(tmp / "out")) for a in command]
    assert main([argv[0], "--weights", str(tmp / name), *argv[1:]]) == 2
    line = _one_line(capsys)
    assert str(tmp / name) in line and ("refused" in line or "not a weights file" in line), line
    assert not marker.exists()
    assert not (tmp / "out").exists()  # nothing written for a refused file


def test_payload_in_export_info_and_resume(evil, capsys):
    tmp, marker = evil
    assert main(["export", "--info", str(tmp / "evil.torchscript")]) == 2
    assert "not an export" in _one_line(capsys)
    root = tiny_bccd(tmp / "bccd", count=4)
    config = tiny_config(tmp / "tiny.yaml", root, trainer__max_epochs=1)
    code = main(["train", "--config", str(config), "--project", str(tmp / "runs"), "--resume", str(tmp / "evil.ckpt")])
    assert code == 2
    assert "refused: it names the Python callable" in _one_line(capsys)
    assert not marker.exists()
    assert not (tmp / "runs" / "exp").exists()  # a run that never started leaves no folder


def test_resume_goes_through_the_safe_reader(evil, monkeypatch):
    """Lightning's own checkpoint reader is replaced, so a payload added after the pre-check (or any
    other path into ``trainer.fit(ckpt_path=...)``) is refused too."""
    from gridyolo.training.cli import SafeCheckpointIO

    tmp, marker = evil
    with pytest.raises(GridyoloError, match="refused"):
        SafeCheckpointIO().load_checkpoint(tmp / "evil.ckpt", map_location="cpu", weights_only=False)
    assert not marker.exists()
    assert "state_dict" in SafeCheckpointIO().load_checkpoint(tmp / "clean.ckpt")


def test_weights_are_told_apart_by_content(evil, tmp_path):
    from gridyolo.deploy.export import export_onnx, export_torchscript

    clean = tmp_path / "clean.ckpt"
    export_torchscript(str(clean), str(tmp_path / "model.onnx"))  # a TorchScript file with the wrong suffix
    export_onnx(str(clean), str(tmp_path / "model.torchscript"))  # and an ONNX file with another
    assert weights_format(str(tmp_path / "model.onnx")) == "torchscript"
    assert weights_format(str(tmp_path / "model.torchscript")) == "onnx"
    assert weights_format(str(clean)) == "checkpoint"
    with pytest.raises(GridyoloError, match="an exported model, not a training checkpoint"):
        load_checkpoint(str(tmp_path / "model.onnx"))
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(GridyoloError, match="not a weights file"):
        weights_format(str(tmp_path / "empty.ckpt"))
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")  # a torch file, not a gridyolo checkpoint
    with pytest.raises(GridyoloError, match="no 'gridyolo' metadata"):
        load_checkpoint(str(tmp_path / "other.ckpt"))


def test_detect_runs_renamed_exports(evil, bccd_root, tmp_path, capsys):
    """What the file is decides how it runs, not its name."""
    from gridyolo.deploy.export import export_onnx, export_torchscript

    clean = tmp_path / "clean.ckpt"
    export_torchscript(str(clean), str(tmp_path / "ts.bin"))
    export_onnx(str(clean), str(tmp_path / "onnx.bin"))
    image = str(bccd_root / "JPEGImages" / "BloodImage_00000.jpg")
    for name in ("ts.bin", "onnx.bin"):
        argv = ["detect", "--weights", str(tmp_path / name), "--source", image, "--out", str(tmp_path / name[:-4]),
                "--quiet", "--device", "cpu"]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "(torch on cpu)" in out and "(onnxruntime on cpu)" in out
