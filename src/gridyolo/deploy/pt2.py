"""``gridyolo export --format pt2``: ``torch.export`` programs, and their AOTInductor package.

``model.pt2`` is an ExportedProgram (``torch.export.save``) of ``ExportPipeline``: the Detector, the
decode and per-class NMS in one graph, from a letterboxed ``uint8 [N, 3, size, size]`` batch (dynamic N),
its letterbox params ``[N, 4]`` and original sizes ``[N, 2]`` to the raw grid and the detections at the
thresholds chosen at export (in the metadata). Where the installed torch cannot export the decode, the
program is the raw model alone (``program: raw`` in the metadata). ``model.aoti.pt2`` is the same
program compiled by AOTInductor (``torch._inductor.aoti_compile_and_package``: machine code, loadable
from C++ without Python), made where a C++ compiler is present.

gridyolo runs both around the program's raw output (OpenCV letterbox before, ``decode.decode_grid``
after, with the thresholds of the run), as it runs an ONNX file; the program's own detections equal
that decode at its thresholds (a test). Loading is checked first (``check_archive``): torch.export's
loader unpickles some payloads with ``weights_only=False``, so an archive holding any is refused, and an
AOTInductor package, which is compiled code, loads only with ``trust_compiled``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import warnings
import zipfile
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from gridyolo import __version__
from gridyolo.core.decode import decode_grid
from gridyolo.core.decode_settings import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_MAX_DETECTIONS,
    DecodeSettings,
    resolve_conf_threshold,
)
from gridyolo.core.grid import activate, cell_boxes
from gridyolo.deploy.onnx_runner import METADATA_KEY
from gridyolo.errors import GridyoloError
from gridyolo.files import atomic_path
from gridyolo.input_guards import check_input_size
from gridyolo.models import backbone_stride, check_head_input_size
from gridyolo.models.checkpoint import detector_from_checkpoint
from gridyolo.weights_kind import weights_format


class ExportPipeline(nn.Module):
    """Detector + decode + per-class NMS with flat outputs, in ops ``torch.export`` can capture.

    ``forward(batch uint8 [N, 3, size, size], params [N, 4], sizes [N, 2])`` -> ``(raw [N, S, S, B*5+C],
    boxes [K, 4] xyxy original px, scores [K], labels [K], image_index [K])``, by score within each image,
    at most ``max_detections`` per image: ``decode.decode_grid`` step by step, with NMS per (image, class)
    by the coordinate offset that ``batched_nms`` uses (its size switch cannot be traced).
    """

    def __init__(self, detector: nn.Module, input_size: int, conf_threshold: float, iou_threshold: float,
                 max_detections: int, pre_nms_topk: int = 1000) -> None:  # fmt: skip
        super().__init__()
        self.detector = detector.eval()
        self.input_size, self.num_boxes = input_size, detector.num_boxes
        self.conf_threshold, self.iou_threshold = conf_threshold, iou_threshold
        self.max_detections, self.pre_nms_topk = max_detections, pre_nms_topk

    def forward(self, batch: Tensor, params: Tensor, sizes: Tensor) -> tuple[Tensor, ...]:
        raw = self.detector(batch)
        n = raw.shape[0]
        pred = activate(raw.float(), self.num_boxes)
        num_classes = pred.class_prob.shape[-1]
        boxes = cell_boxes(pred.xy, pred.sqrt_wh).reshape(n, -1, 4) * self.input_size
        scores = (pred.conf.unsqueeze(-1) * pred.class_prob.unsqueeze(3)).reshape(n, -1)
        k = min(self.pre_nms_topk, scores.shape[1])
        top_scores, top_index = scores.topk(k, dim=1)
        keep = top_scores > self.conf_threshold
        image = torch.arange(n, device=raw.device).unsqueeze(1).expand(n, k)[keep]
        cand_scores, label = top_scores[keep], top_index[keep] % num_classes
        cand = boxes[image, top_index[keep] // num_classes]
        p = params.to(cand)[image]
        cand = (cand - p[:, [2, 3, 2, 3]]) / p[:, [0, 1, 0, 1]]
        limits = sizes.to(cand)[image][:, [1, 0, 1, 0]]  # (width, height, width, height)
        cand = torch.minimum(cand.clamp(min=0), limits)
        # boxes are clipped to [0, size]: an offset of (largest size + 1) per group keeps groups apart
        offsets = (image * num_classes + label).to(cand) * (sizes.max() + 1)
        # two sentinel boxes at negative coordinates, scored below any candidate: NMS keeps both, so it
        # returns at least two indices, which the exported graph asserts (torchvision registers the
        # op's output size with a lower bound of 2); they are dropped at once
        sentinels = torch.tensor([[-3.0, -3.0, -2.0, -2.0], [-6.0, -6.0, -5.0, -5.0]], device=cand.device)
        kept = nms(torch.cat([cand + offsets[:, None], sentinels]),
                   torch.cat([cand_scores, torch.tensor([-1.0, -2.0], device=cand.device)]), self.iou_threshold)
        kept = kept[kept < cand.shape[0]]
        kept = kept[torch.sort(image[kept], stable=True).indices]  # by image, by score inside each
        kept_image = image[kept]
        # per-image counts by scatter_add, not bincount: its data-dependent length is asserted >= 2 when
        # run, which one image fails
        counts = torch.zeros(n, dtype=torch.long, device=raw.device)
        counts = counts.scatter_add_(0, kept_image, torch.ones_like(kept_image))
        rank = torch.arange(kept.shape[0], device=raw.device) - (torch.cumsum(counts, 0) - counts)[kept_image]
        kept = kept[rank < self.max_detections]
        return raw, cand[kept], cand_scores[kept], label[kept], image[kept]


def export_pt2(
    weights: str,
    out: str,
    img_size: int | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    aoti_out: str | None = None,
) -> dict[str, Any]:
    """Write the ExportedProgram of ``weights`` to ``out`` (see the module docstring) and, with
    ``aoti_out``, its AOTInductor package. Returns the metadata, with ``notes``: what could not be made."""
    detector, meta = detector_from_checkpoint(weights)
    size = img_size or meta.input_size
    check_input_size(size, backbone_stride(meta.backbone))
    check_head_input_size(meta.head, meta.input_size, size)
    conf = resolve_conf_threshold(conf_threshold, meta.conf_threshold)
    pipeline = ExportPipeline(detector, size, conf, iou_threshold, max_detections)
    example = (torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8),  # N=2: 1 would be specialized
               torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2), torch.tensor([[float(size)] * 2] * 2))  # fmt: skip
    batch = torch.export.Dim("batch", min=1, max=1024)
    notes = []
    with _quiet_torch():
        try:
            program = torch.export.export(pipeline, example, dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
            kind = "pipeline"
        except Exception as exc:  # an older torch that cannot capture the data-dependent NMS
            notes.append(f"torch {torch.__version__} cannot export the decode ({exc.__class__.__name__}); "
                         "the program is the raw model")  # fmt: skip
            program = torch.export.export(detector.eval(), example[:1], dynamic_shapes=({0: batch},))
            kind = "raw"
    info = {**meta.to_dict(), "input_size": size, "format": "pt2", "program": kind, "conf_threshold": conf,
            "iou_threshold": iou_threshold, "max_detections": max_detections, "gridyolo_version": __version__,
            "torch_version": torch.__version__}  # fmt: skip
    with atomic_path(out) as tmp:
        torch.export.save(program, f"{tmp}.pt2", extra_files={METADATA_KEY: json.dumps(info)})  # suffix wanted
        os.replace(f"{tmp}.pt2", tmp)
    if aoti_out:
        notes.extend(_aoti_package(program, aoti_out, {**info, "format": "aoti"}))
    return {**info, "notes": notes}


@contextmanager
def _quiet_torch():
    """torch.export and Inductor narrate their work (unbacked sizes of NMS, no CUDA here, ops without a
    C shim): notes for torch developers, not for someone exporting a model."""
    loggers = [logging.getLogger(name) for name in ("torch", "torch._inductor", "torch.utils.cpp_extension")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _aoti_package(program: Any, out: str, info: dict[str, Any]) -> list[str]:
    compile_package = getattr(torch._inductor, "aoti_compile_and_package", None)
    if compile_package is None:
        return [f"skipped the AOTInductor package: torch {torch.__version__} has no aoti_compile_and_package"]
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return ["skipped the AOTInductor package: no C++ compiler (c++, g++ or clang++) on PATH"]
    with atomic_path(out) as tmp, _quiet_torch():
        compile_package(program, package_path=f"{tmp}.pt2")  # it insists on the suffix
        os.replace(f"{tmp}.pt2", tmp)
        with zipfile.ZipFile(tmp) as archive:
            top = archive.namelist()[0].split("/")[0]
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(f"{top}/extra/{METADATA_KEY}", json.dumps(info))
    return []


def archive_metadata(path: str) -> dict[str, Any]:
    """The gridyolo metadata of a ``.pt2`` archive (ExportedProgram or AOTInductor package), read from
    the zip without loading anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            found = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_KEY}")]
            text = archive.read(found[0]).decode("utf-8") if found else None
        info = json.loads(text) if text is not None else None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise GridyoloError(f"{path}: a damaged .pt2 archive") from None
    if not isinstance(info, dict) or not isinstance(info.get("class_names"), list) or not all(
        isinstance(info.get(k), int) and info.get(k) > 0 for k in ("input_size", "grid_size", "num_boxes")
    ):
        raise GridyoloError(f"{path}: .pt2 archive without valid gridyolo metadata (not exported by gridyolo)")
    return info


# what torch.export.save writes; anything else in an archive is refused before torch reads it
_ARCHIVE_FILES = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")


def check_archive(path: str) -> None:
    """Refuse a ``.pt2`` ExportedProgram that ``torch.export.load`` would unpickle with
    ``weights_only=False``: only tensor payloads (no pickled weight or constant, no custom or opaque
    object), graph json, weights-only sample inputs and extra files pass."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                _, _, rest = name.partition("/")
                if rest in _ARCHIVE_FILES or rest.startswith(("extra/", "models/")) and not rest.endswith(".pt"):
                    continue
                folder, _, file = rest.rpartition("/")
                if folder in ("data/weights", "data/constants") and file.endswith("_config.json"):
                    _check_payload_config(archive.read(name), path, name)
                elif folder == "data/weights" and file.startswith("weight_") or (
                    folder == "data/constants" and file.startswith("tensor_")
                ):
                    continue
                elif folder == "data/sample_inputs" and file.endswith(".pt"):
                    try:
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                    except Exception:
                        raise GridyoloError(f"{path}: refused: {name} is not weights-only data") from None
                else:
                    raise GridyoloError(f"{path}: refused: {name} is not part of a torch.export archive gridyolo "
                                        "reads (pickled payloads can run code)")  # fmt: skip
    except (zipfile.BadZipFile, OSError):
        raise GridyoloError(f"{path}: a damaged .pt2 archive") from None


def _check_payload_config(text: bytes, path: str, name: str) -> None:
    try:
        config = json.loads(text)["config"]
        entries = list(config.values())
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise GridyoloError(f"{path}: refused: {name} is not a payload table") from None
    for entry in entries:
        plain = isinstance(entry, dict) and entry.get("use_pickle") is False
        if not plain or not str(entry.get("path_name", "")).startswith(("weight_", "tensor_")):
            raise GridyoloError(f"{path}: refused: {name} holds a pickled or custom-object payload, which can run "
                                "code; gridyolo loads tensors only")  # fmt: skip


class Pt2Model:
    """A ``.pt2`` program as a predictor's model stage (``predict_raw`` / ``postprocess`` as
    ``InferenceModel`` has them), on the CPU. ``run(batch, params, sizes)``: the program's own outputs."""

    def __init__(self, path: str, trust_compiled: bool = False, conf_threshold: float | None = None,
                 iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                 max_detections: int = DEFAULT_MAX_DETECTIONS) -> None:  # fmt: skip
        import torchvision  # noqa: F401  -- registers torchvision::nms, which the program calls

        kind = weights_format(path)
        self.info = archive_metadata(path)
        if kind == "aoti":
            if not trust_compiled:
                raise GridyoloError(f"{path}: an AOTInductor package is compiled machine code that runs when it "
                                    "is loaded; load one you built with --trust-compiled")  # fmt: skip
            try:
                self.program = torch._inductor.aoti_load_package(path)
            except Exception as exc:
                raise GridyoloError(f"{path}: cannot load the AOTInductor package ({exc.__class__.__name__}: "
                                    f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None  # fmt: skip
        else:
            check_archive(path)
            try:
                self.program = torch.export.load(path).module()
            except Exception as exc:
                raise GridyoloError(f"{path}: not a torch.export program torch can load "
                                    f"({exc.__class__.__name__})") from None
        self.info["format"] = kind
        self.input_size, self.num_boxes = int(self.info["input_size"]), int(self.info["num_boxes"])
        self.exported_thresholds = (self.info.get("conf_threshold"), self.info.get("iou_threshold"),
                                    self.info.get("max_detections"))  # fmt: skip
        decode = DecodeSettings.resolve(conf_threshold, self.info.get("conf_threshold"), iou_threshold, max_detections)
        self.conf_threshold, self.iou_threshold = decode.conf_threshold, decode.iou_threshold
        self.max_detections = decode.max_detections

    @torch.no_grad()
    def run(self, batch: Tensor, params: Tensor, sizes: Tensor) -> tuple[Tensor, ...]:
        if self.info.get("program") == "raw":
            return (self.program(batch.contiguous()),)
        return tuple(self.program(batch.contiguous(), params.float(), sizes.float()))

    def predict_raw(self, batch: Tensor) -> Tensor:
        n = batch.shape[0]
        params = torch.tensor([[1.0, 1.0, 0.0, 0.0]]).expand(n, 4)
        sizes = torch.full((n, 2), float(self.input_size))
        return self.run(batch, params, sizes)[0]

    def postprocess(self, raw: Tensor, params: Tensor, sizes: Tensor) -> list[dict[str, Tensor]]:
        return decode_grid(raw, self.num_boxes, (self.input_size, self.input_size), params, sizes,
                           self.conf_threshold, self.iou_threshold, self.max_detections)  # fmt: skip
