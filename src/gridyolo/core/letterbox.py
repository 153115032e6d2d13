"""Where an image lands in the square model input, and back.

Every image goes through ``letterbox`` (or a plain ``stretch`` resize, as YOLOv1 did) to the square
model input; the returned ``params = (scale_x, scale_y, pad_x, pad_y)`` map input pixels back to the
original image exactly: ``x_orig = (x_input - pad_x) / scale_x``. Training, evaluation and the
numpy ONNX runner use ``letterbox`` (OpenCV); the TorchScript-safe ``InferenceModel`` uses the twin
``letterbox_size`` with torch's resize. No albumentations here: this module is on the detect path.
"""

from __future__ import annotations

import cv2
import numpy as np

RESIZE_MODES = ("letterbox", "stretch")
PAD_VALUE = 114


def letterbox_geometry(height: int, width: int, size: int, mode: str = "letterbox") -> tuple[int, int, int, int]:
    """``(new_width, new_height, pad_x, pad_y)`` of an image placed into a ``size x size`` input."""
    if mode == "stretch":
        return size, size, 0, 0
    if mode != "letterbox":
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got '{mode}'")
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def letterbox_size(height: int, width: int, size: int, stretch: bool) -> list[int]:
    """``[new_width, new_height, pad_x, pad_y]``: ``letterbox_geometry`` in a form TorchScript compiles."""
    if stretch:
        return [size, size, 0, 0]
    scale = min(size / width, size / height)
    new_w = max(1, int(round(width * scale)))
    new_h = max(1, int(round(height * scale)))
    return [new_w, new_h, (size - new_w) // 2, (size - new_h) // 2]


def letterbox_params(height: int, width: int, size: int, mode: str = "letterbox") -> np.ndarray:
    """``float32 [4] = (scale_x, scale_y, pad_x, pad_y)`` of an image of ``height x width``."""
    new_w, new_h, pad_x, pad_y = letterbox_geometry(height, width, size, mode)
    return np.array([new_w / width, new_h / height, pad_x, pad_y], dtype=np.float32)


def letterbox(
    image: np.ndarray, size: int, mode: str = "letterbox", fill: int = PAD_VALUE
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an HWC image into ``size x size`` keeping its aspect ratio (``letterbox``) or not.

    Returns:
        ``(image [size, size, C], params float32 [4])`` with ``params = (scale_x, scale_y, pad_x, pad_y)``:
        a point ``x`` of the original image lands at ``x * scale_x + pad_x`` (continuous pixel coords).
    """
    height, width = image.shape[:2]
    new_w, new_h, pad_x, pad_y = letterbox_geometry(height, width, size, mode)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if (new_w, new_h) != (size, size):
        image = cv2.copyMakeBorder(
            image, pad_y, size - new_h - pad_y, pad_x, size - new_w - pad_x, cv2.BORDER_CONSTANT, value=(fill,) * 3
        )
    return image, letterbox_params(height, width, size, mode)


def boxes_to_input(boxes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """xyxy boxes ``[K, 4]`` in original pixels -> model-input pixels, given letterbox ``params``."""
    scale = np.array([params[0], params[1], params[0], params[1]], dtype=np.float32)
    shift = np.array([params[2], params[3], params[2], params[3]], dtype=np.float32)
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale + shift).astype(np.float32)


def boxes_to_original(boxes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Inverse of ``boxes_to_input``."""
    scale = np.array([params[0], params[1], params[0], params[1]], dtype=np.float32)
    shift = np.array([params[2], params[3], params[2], params[3]], dtype=np.float32)
    return ((np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - shift) / scale).astype(np.float32)


class EvalTransform:
    """Deterministic letterbox / stretch only; keeps the params that map boxes back exactly."""

    def __init__(self, input_size: int, resize_mode: str = "letterbox") -> None:
        self.input_size = input_size
        self.resize_mode = resize_mode

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(image [S, S, 3], boxes [K, 4] input px, labels [K], params [4])``."""
        out, params = letterbox(image, self.input_size, self.resize_mode)
        return out, boxes_to_input(boxes, params), np.asarray(labels, dtype=np.int64), params
