"""Image loading with OpenCV: any file OpenCV reads becomes RGB uint8 HWC."""

from __future__ import annotations

import threading
import warnings

import cv2
import numpy as np

from gridyolo.errors import DatasetError
from gridyolo.input_guards import check_image_pixels, require_regular_file

_PILLOW_LIMIT_LOCK = threading.Lock()
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def to_rgb_uint8(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert an OpenCV-decoded array (gray, BGR, BGRA; 8/16-bit or float) to RGB ``uint8`` HWC."""
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535  # full 16-bit range onto 0..255
        image = image.astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DatasetError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DatasetError(f"{source}: unsupported image shape {image.shape}")


def load_image(path: str) -> np.ndarray:
    """Read an image file as RGB ``uint8`` ``[H, W, 3]``.

    Grayscale, RGBA and 16-bit files are converted. EXIF orientation is ignored on purpose:
    COCO / VOC annotations refer to the stored pixel grid.

    Raises:
        DatasetError: the file is missing or OpenCV cannot decode it (the message names the file).
    """
    require_regular_file(path, "image file", DatasetError)
    size = header_size(path)
    if size is not None:
        check_image_pixels(*size, path)  # from the header, before a decompression bomb is decoded
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt or not an image file)")
    return to_rgb_uint8(image, path)


def read_image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (no full decode), via Pillow."""
    require_regular_file(path, "image file", DatasetError)
    size = header_size(path)
    if size is None:
        raise DatasetError(f"{path}: cannot read image header (not an image Pillow knows)")
    return size


def header_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` from the header, ``None`` when Pillow cannot read it (OpenCV may still)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_image_pixels decides
            try:
                with Image.open(path) as im:
                    return im.size
            except Image.DecompressionBombError:  # only the header is read here: read it past Pillow's limit
                with _PILLOW_LIMIT_LOCK:
                    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                    try:
                        with Image.open(path) as im:
                            return im.size
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError):
        return None
