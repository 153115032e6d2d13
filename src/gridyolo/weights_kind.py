"""What a weights file is, told by its content, never by its name. No torch here: the torch-free ONNX
runtime, the checkpoint reader (``models.checkpoint``) and every command ask this module."""

from __future__ import annotations

import zipfile

from gridyolo.errors import GridyoloError
from gridyolo.input_guards import require_regular_file

FORMATS = ("checkpoint", "torchscript", "onnx", "pt2", "aoti")


def weights_format(path: str) -> str:
    """One of ``FORMATS``, told by the file's content, never by its name.

    A training checkpoint is a ``torch.save`` zip archive (or a legacy pickle stream); a TorchScript
    archive is a zip with a ``code/`` folder; a ``torch.export`` archive (``.pt2``) is a zip with an
    ``archive_format`` record and ``models/*.json`` (an ExportedProgram, ``pt2``) or
    ``data/aotinductor/`` (an AOTInductor package: compiled code, ``aoti``); an ONNX model is a protobuf
    ``ModelProto`` whose first field is ``ir_version`` (byte 0x08).
    """
    require_regular_file(path, "weights file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise GridyoloError(f"{path}: a damaged zip archive, not a readable weights file") from None
        if any("/code/" in name for name in names):
            return "torchscript"
        if any(name.endswith("/archive_format") for name in names):
            if any("/data/aotinductor/" in name for name in names):
                return "aoti"
            if any("/models/" in name and name.endswith(".json") for name in names):
                return "pt2"
        return "checkpoint"
    if head[:1] == b"\x80":  # pickle protocol 2+: torch.save's legacy format
        return "checkpoint"
    if head[:1] == b"\x08":
        return "onnx"
    raise GridyoloError(f"{path}: not a weights file (a training checkpoint, a TorchScript, .pt2 or ONNX file)")
