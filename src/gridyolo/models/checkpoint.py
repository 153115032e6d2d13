"""The training checkpoint format: what a checkpoint carries (``ModelMeta``), how it is read safely
(``weights_only=True``), and how the model is rebuilt from it. Training writes it; deploy reads it."""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

from gridyolo import __version__
from gridyolo.errors import GridyoloError
from gridyolo.input_guards import require_regular_file
from gridyolo.models.detector import Detector, build_detector
from gridyolo.weights_kind import weights_format


@dataclass
class ModelMeta:
    """Everything needed to rebuild and use a trained detector without its dataset."""

    backbone: str
    grid_size: int
    num_boxes: int
    head_channels: int
    class_names: list[str]
    category_ids: list[int]
    input_size: int
    resize_mode: str
    mean: list[float]
    std: list[float]
    version: str = __version__
    # detect's default --conf: the score threshold with the best F1 on the validation split (None in
    # checkpoints written before it existed: 0.25 then)
    conf_threshold: float | None = None
    head: str = "pool"  # models.head.HEADS; checkpoints written before the option have the pool head

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return asdict(self)


def safe_torch_load(path: str) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, numbers, strings and plain containers only.

    A pickle can name any Python callable and the unpickler would call it; a weights file never needs
    one, so anything outside torch's weights-only allowlist (plus ``SAFE_GLOBALS``) is refused with one
    line that names it, and nothing in the file runs.
    """
    require_regular_file(path, "checkpoint")
    try:
        with _allowlisted(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # refused or fine: no news
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it names the Python callable {found.group(1)}" if found else "it holds Python objects"
        raise GridyoloError(
            f"{path}: refused: {what}, which a weights file never needs; gridyolo loads weights with "
            "weights_only=True and never runs code from them"
        ) from None
    except Exception as exc:  # truncated, not a torch file, ...
        raise GridyoloError(f"{path}: cannot read checkpoint ({exc.__class__.__name__})") from None


# What gridyolo and Lightning checkpoints hold beyond torch's own weights-only set (tensors, dtypes,
# OrderedDict, primitives): nothing today. A type added here must be plain data, never a callable.
SAFE_GLOBALS: list[type] = []


def _allowlisted():
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    return safe_globals(SAFE_GLOBALS) if safe_globals is not None else contextlib.nullcontext()


def load_checkpoint(path: str) -> dict:
    """A gridyolo training checkpoint as a dict (loaded safely; see ``safe_torch_load``)."""
    if weights_format(path) != "checkpoint":
        raise GridyoloError(f"{path}: an exported model, not a training checkpoint")
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("gridyolo"), dict):
        raise GridyoloError(f"{path}: not a gridyolo checkpoint (no 'gridyolo' metadata)")
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GridyoloError(f"{path}: not a gridyolo checkpoint (no state_dict of tensors)")
    return checkpoint


def detector_from_checkpoint(
    path: str, use_ema: bool = True, checkpoint: dict | None = None
) -> tuple[Detector, ModelMeta]:
    """Rebuild the Detector of a training checkpoint (EMA weights when present) in eval mode;
    ``checkpoint``: the file's content when the caller has already read it."""
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(path)
    try:
        meta = ModelMeta(**checkpoint["gridyolo"])
    except TypeError as exc:
        raise GridyoloError(f"{path}: malformed gridyolo metadata ({exc})") from None
    model = build_detector(meta.backbone, meta.num_classes, meta.grid_size, meta.num_boxes, None, meta.head_channels,
                           meta.head, meta.input_size)  # fmt: skip
    state = checkpoint["state_dict"]
    prefix = "ema.module." if use_ema and any(k.startswith("ema.module.") for k in state) else "model."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise GridyoloError(f"{path}: weights do not fit the model its metadata describes ({str(exc)[:200]})") from None
    return model.eval(), meta
