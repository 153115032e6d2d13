"""ONNX Runtime as the model stage on the CPU: the fastest path measured on CPUs (BENCHMARKS.md:
1.9-6× the eager forward). Pre-processing and decode+NMS stay the torch code of ``InferenceModel``, so
only the network's numbers can differ, and ``onnxruntime_from_checkpoint`` checks them against the eager
model once, when the export is made.

A checkpoint is exported once; the ONNX file is cached under ``$GRIDYOLO_CACHE`` (default
``~/.cache/gridyolo``), named by the checkpoint's sha256, the input size and the gridyolo version,
so a changed checkpoint never reuses a stale export; a record beside it (the sha256 of the checkpoint
and of the exported file) is checked on every hit, and an entry that does not verify is exported again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gridyolo import __version__
from gridyolo.core.decode import decode_grid
from gridyolo.core.decode_settings import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS, DecodeSettings
from gridyolo.deploy.export import export_onnx, inference_from_checkpoint
from gridyolo.deploy.onnx_runner import check_raw_shape, cpu_session, read_metadata
from gridyolo.errors import GridyoloError
from gridyolo.files import atomic_path, cache_dir, write_json

RAW_TOLERANCE = 1e-3  # max |ONNX Runtime - eager| on the raw grid (logits) for the fast path to be used


def onnxruntime_available() -> bool:
    """onnxruntime to run, onnx to export (both are dependencies; a trimmed install may lack them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


class OnnxRuntimeModel:
    """``predict_raw`` / ``postprocess`` as ``InferenceModel`` has them, the model stage run by an ONNX
    Runtime session on the CPU (``predictor.Predictor`` does the pre-processing).

    Args:
        path: an ONNX file written by ``export.export_onnx`` (``uint8 [N, 3, size, size]`` -> raw grid
            ``[N, S, S, B*5 + C]``; metadata: input size, resize mode, boxes per cell, class names).
        conf_threshold, iou_threshold, max_detections, pre_nms_topk: see ``decode.decode_grid``.
    """

    def __init__(
        self,
        path: str,
        conf_threshold: float | None = None,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        pre_nms_topk: int = 1000,
    ) -> None:
        self.session = cpu_session(path)
        self.path = path
        self.info: dict[str, Any] = read_metadata(self.session, path)
        self.input_size = int(self.info["input_size"])
        self.num_boxes = int(self.info["num_boxes"])
        decode = DecodeSettings.resolve(conf_threshold, self.info.get("conf_threshold"), iou_threshold, max_detections)
        self.conf_threshold, self.iou_threshold = decode.conf_threshold, decode.iou_threshold
        self.max_detections, self.pre_nms_topk = decode.max_detections, pre_nms_topk

    def predict_raw(self, batch: Tensor) -> Tensor:
        """``uint8 [N, 3, size, size]`` -> raw grid ``[N, S, S, B*5 + C]`` (float32)."""
        raw = self.session.run(None, {"images": batch.contiguous().numpy()})[0]
        check_raw_shape(raw.shape, self.info, self.path, batch=batch.shape[0])
        return torch.from_numpy(raw)

    def postprocess(self, raw: Tensor, params: Tensor, sizes: Tensor) -> list[dict[str, Tensor]]:
        size = (self.input_size, self.input_size)
        return decode_grid(raw, self.num_boxes, size, params, sizes, self.conf_threshold, self.iou_threshold,
                           self.max_detections, self.pre_nms_topk)  # fmt: skip


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_entry(weights: str, img_size: int | None = None, digest: str | None = None) -> Path:
    """Where the ONNX export of ``weights`` at ``img_size`` lives in the cache: named by the checkpoint's
    sha256 (``digest``, computed when not given), the input size and the gridyolo version, so a changed
    checkpoint never reuses a stale export. Beside it, ``.json`` holds the digests that verify the entry
    (``verified_entry``), or ``.rejected.json`` why the checkpoint has no usable export."""
    key = f"{(digest or _sha256(weights))[:16]}-{img_size or 'train'}-{__version__}"
    return cache_dir() / "onnx" / f"{Path(weights).stem}-{key}.onnx"


def _read_record(path: Path) -> dict | None:
    """A cache record (json object), or ``None`` when it is missing, unreadable or not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def verified_entry(path: Path, checkpoint_digest: str) -> str | None:
    """Why the cached export at ``path`` cannot be trusted for the checkpoint of ``checkpoint_digest``
    (``None``: it can). Its record must name this checkpoint and the export's own sha256, so a file
    placed under the name, truncated or replaced, or a record of another checkpoint, does not verify."""
    record = _read_record(path.with_suffix(".json"))
    if record is None:
        return "no readable record of the checkpoint it was exported from"
    if record.get("checkpoint_sha256") != checkpoint_digest:
        return "its record names another checkpoint"
    if record.get("onnx_sha256") != _sha256(str(path)):
        return "the file is not the one that was exported and checked (changed, replaced or truncated)"
    return None


def raw_gap(reference: Any, model: OnnxRuntimeModel, seed: int = 0) -> float:
    """Max |difference| of the raw grids of the eager model and ONNX Runtime on a random uint8 batch."""
    size = model.input_size
    probe = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = reference.predict_raw(probe)
    return float((expected - model.predict_raw(probe)).abs().max())


def onnxruntime_from_checkpoint(
    weights: str,
    read_checkpoint: Callable[[], dict],
    img_size: int | None = None,
    notes: list[str] | None = None,
) -> OnnxRuntimeModel:
    """The ONNX Runtime model of a checkpoint, exported and checked once, then reused from the cache.

    On a cache hit the checkpoint is hashed, not read or run, and the entry is used only if it verifies
    (``verified_entry``); one that does not is exported again, and why is appended to ``notes``. On a
    miss the checkpoint (``read_checkpoint()``) is exported, and the export is kept only if its raw grid
    matches the eager model's within ``RAW_TOLERANCE`` on a probe batch; otherwise the reason is kept
    instead, and this and every later call raise ``GridyoloError`` with it (the caller falls back to torch).
    """
    digest = _sha256(weights)
    path = cache_entry(weights, img_size, digest)
    record, rejected = path.with_suffix(".json"), path.with_suffix(".rejected.json")
    if path.is_file():
        why = verified_entry(path, digest)
        if why is None:
            try:
                return OnnxRuntimeModel(str(path))
            except GridyoloError as exc:
                why = str(exc)
        if notes is not None:
            notes.append(f"{path}: cached export ignored ({why}); exported again")
    elif rejected.is_file():
        reason = _read_record(rejected)
        if reason is not None and reason.get("checkpoint_sha256") == digest and isinstance(reason.get("reason"), str):
            raise GridyoloError(reason["reason"])
        if notes is not None:
            notes.append(f"{rejected}: unreadable or of another checkpoint; ignored, exported again")
    for stale in (path, record, rejected):
        stale.unlink(missing_ok=True)
    checkpoint = read_checkpoint()
    with atomic_path(path) as tmp:  # atomic: concurrent detects never read half a file
        try:
            export_onnx(weights, tmp, img_size, checkpoint=checkpoint)
            model = OnnxRuntimeModel(tmp)
            reference, _ = inference_from_checkpoint(weights, img_size, checkpoint=checkpoint)
            gap = raw_gap(reference, model)
            reason = None if gap <= RAW_TOLERANCE else (
                f"ONNX Runtime differs from the eager model by {gap:.2g} on the raw grid")  # fmt: skip
        except (GridyoloError, RuntimeError, ValueError) as exc:  # e.g. a head pool with no fixed-size ONNX form
            reason = f"ONNX export failed ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})"
        if reason is not None:
            write_json(rejected, {"reason": reason, "checkpoint_sha256": digest})
            raise GridyoloError(reason)
        exported = _sha256(tmp)
    write_json(record, {"checkpoint_sha256": digest, "onnx_sha256": exported, "checkpoint": str(weights)})
    model.path = str(path)
    return model
