"""What ``--resume`` may change: the run's controls, never what the model is or what it learns from.

A checkpoint carries the module's settings (``hyper_parameters``) and the data module's
(``DetectionDataModule.state_dict``). A resumed run whose model or data settings differ would mix two
runs (another grid's head under the first run's optimizer state, a size mismatch traceback from another
backbone), so it is refused in one line naming each difference; only the settings below may change.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from gridyolo.errors import GridyoloError

# decoding during validation and where the pre-trained weights came from (the checkpoint replaces them)
SAFE_MODEL = frozenset({"weights", "conf_threshold", "iou_threshold", "max_detections", "eval_backend"})
# how data is loaded, not which data or how it is augmented
SAFE_DATA = frozenset({"num_workers", "val_batch_size", "check_images"})
DATA_KEY = "DetectionDataModule"  # where Lightning stores the data module's state_dict in a checkpoint


def plain(value: Any) -> Any:
    """A comparable form: dataclasses and namespaces as dicts, tuples as lists, ints as floats."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if hasattr(value, "as_dict"):  # jsonargparse Namespace
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def differences(saved: dict, current: dict, defaults: dict, safe: frozenset, prefix: str) -> list[str]:
    """``prefix.key saved -> current`` for every key that differs and may not; a key missing from an
    older checkpoint counts as its default."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in safe or key not in current:
            continue
        before, after = saved.get(key, defaults.get(key)), current[key]
        if plain(before) != plain(after):
            out.append(f"{prefix}.{key} {_short(plain_text(before))} -> {_short(plain_text(after))}")
    return out


def plain_text(value: Any) -> str:
    value = plain(value)
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def init_defaults(cls: type) -> dict:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}  # fmt: skip


def refuse_changed_settings(resume: str, checkpoint: dict, model, data) -> None:
    """Raise ``GridyoloError`` when the resumed run's model or data settings differ from the checkpoint's
    in anything but ``SAFE_MODEL`` / ``SAFE_DATA``."""
    saved_model = checkpoint.get("hyper_parameters")
    changed = []
    if isinstance(saved_model, dict):
        current = {k: v for k, v in dict(model.hparams).items() if k not in ("class_names", "category_ids")}
        changed += differences(saved_model, current, init_defaults(type(model)), SAFE_MODEL, "model")
    saved_data = checkpoint.get(DATA_KEY)
    if isinstance(saved_data, dict) and isinstance(saved_data.get("settings"), dict):
        changed += differences(saved_data["settings"], data.settings(), {}, SAFE_DATA, "data")
    if changed:
        raise GridyoloError(
            f"--resume {resume}: the run was trained with other settings ({'; '.join(changed)}); resume with the "
            f"checkpoint's (only trainer settings and {', '.join(sorted(f'model.{k}' for k in SAFE_MODEL))}, "
            f"{', '.join(sorted(f'data.{k}' for k in SAFE_DATA))} may change) or start a new run"
        )
