"""Checks where untrusted input enters: files that must be regular files, image sizes, devices, and
the argparse types of the command line (ranges and choices give one line and exit 2, never a
traceback or a silently wrong run)."""

from __future__ import annotations

import argparse
import math
import os
import stat
from collections import Counter
from collections.abc import Hashable, Iterable

from gridyolo.errors import DatasetError, GridyoloError

# Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS): a 770 KB PNG can declare 16000 x 16000
# pixels and take gigabytes once decoded. GRIDYOLO_MAX_IMAGE_PIXELS changes it (0: no limit).
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970


def require_regular_file(path: str, what: str = "file", error: type[GridyoloError] = GridyoloError) -> None:
    """Raise unless ``path`` is a regular file: a named pipe or a device would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc.__class__.__name__})") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a folder, expected a {what}")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise error(f"{path}: is {kind}, not a regular {what}")


def max_image_pixels() -> int:
    """The pixel limit in force (``GRIDYOLO_MAX_IMAGE_PIXELS``; 0 or less: none)."""
    text = os.environ.get("GRIDYOLO_MAX_IMAGE_PIXELS", "")
    try:
        return int(text) if text.strip() else DEFAULT_MAX_IMAGE_PIXELS
    except ValueError:
        raise GridyoloError(f"GRIDYOLO_MAX_IMAGE_PIXELS={text!r}: expected a whole number of pixels") from None


def check_image_pixels(width: int, height: int, source: str) -> None:
    """A one-line ``DatasetError`` for an image above the pixel limit, before it is decoded."""
    limit = max_image_pixels()
    if limit > 0 and width * height > limit:
        raise DatasetError(
            f"{source}: {width}x{height} = {width * height:,} pixels is above the limit of {limit:,} "
            "(a decompression bomb?); raise it with GRIDYOLO_MAX_IMAGE_PIXELS if the image is real"
        )


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` must exist here."""
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise GridyoloError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise GridyoloError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return name
    raise GridyoloError(f"--device {device}: choose auto, cpu, cuda or cuda:N")


def repeated(values: Iterable[Hashable]) -> list[str]:
    """The values that occur more than once, as sorted text (linear: a 100k-line class list is instant)."""
    return sorted(str(value) for value, count in Counter(values).items() if count > 1)


MAX_BATCH = 1024  # images held in memory at once by detect / eval
MAX_INPUT_SIZE = 4096  # px: a 4096 x 4096 input already needs gigabytes of activations on a CPU


def check_input_size(size: int, stride: int, what: str = "--img-size") -> None:
    """Input sizes are positive multiples of the backbone's stride, so the feature map covers the
    whole input (other sizes shift the grid against the image and flip boxes between cells)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise GridyoloError(f"{what} {size}: must be a positive number of pixels")
    if size > MAX_INPUT_SIZE:
        raise GridyoloError(f"{what} {size}: at most {MAX_INPUT_SIZE} px (activations grow with its square)")
    if size % stride:
        nearest = " or ".join(map(str, sorted({max(size // stride * stride, stride), (size // stride + 1) * stride})))
        raise GridyoloError(f"{what} {size}: must be a multiple of the backbone's stride {stride} (try {nearest})")


# -- argparse types: each raises ArgumentTypeError, which argparse turns into one usage line, exit 2 --
def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def unit_interval(text: str) -> float:
    """A threshold in ``[0, 1]``."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def positive_int(text: str) -> int:
    """A count or size >= 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def image_size(text: str) -> int:
    """A model input size in pixels: 1 to ``MAX_INPUT_SIZE`` (nothing is allocated from a larger one)."""
    value = positive_int(text)
    if value > MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"{text} px is more than {MAX_INPUT_SIZE}, the largest input gridyolo builds")
    return value


def batch_size(text: str) -> int:
    """Images per model call: 1 to ``MAX_BATCH`` (a batch of frames is held in memory)."""
    value = positive_int(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{text} is more than {MAX_BATCH} images per batch")
    return value
