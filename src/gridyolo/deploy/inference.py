"""The whole inference path in one TorchScript-safe module: resize, model, decode, NMS.

``InferenceModel`` follows torchvision's detection calling convention: ``forward(images)`` takes a list
of ``uint8`` RGB ``[3, H, W]`` tensors of any sizes and returns one dict per image with ``boxes``
(``[K, 4]`` xyxy, original-image pixels), ``scores`` ``[K]`` and ``labels`` ``[K]`` (int64, contiguous
class indices). ``gridyolo detect`` runs it eagerly from a checkpoint, ``gridyolo export`` scripts it,
so both give the same detections. ``preprocess`` and ``postprocess`` are exported too, so callers can
time the stages separately.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridyolo.core.decode import decode_grid
from gridyolo.core.decode_settings import DEFAULT_CONF_THRESHOLD, DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS
from gridyolo.core.letterbox import PAD_VALUE, letterbox_size
from gridyolo.models import Detector


def resize_batch(
    images: list[Tensor], size: int, stretch: bool, pad_value: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Resize (stretch or letterbox) each ``uint8 [3, H, W]`` image into one ``uint8 [N, 3, size, size]``
    batch on ``device``, with torch's bilinear resize.

    Returns ``(batch, letterbox params [N, 4] = (scale_x, scale_y, pad_x, pad_y), original sizes [N, 2]
    = (height, width))``, the last two as ``decode.decode_grid`` takes them.
    """
    batch = torch.full((len(images), 3, size, size), pad_value, dtype=torch.uint8, device=device)
    params = torch.zeros((len(images), 4), dtype=torch.float32)
    sizes = torch.zeros((len(images), 2), dtype=torch.float32)
    for i, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError("each image must be a uint8 RGB tensor of shape [3, H, W]")
        height, width = image.shape[1], image.shape[2]
        new_w, new_h, pad_x, pad_y = letterbox_size(height, width, size, stretch)
        x = image.to(device)
        if new_w != width or new_h != height:
            resized = F.interpolate(x.unsqueeze(0).float(), size=(new_h, new_w), mode="bilinear", align_corners=False)
            x = resized[0].round().clamp(0, 255).to(torch.uint8)
        batch[i, :, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = x
        params[i] = torch.tensor([new_w / width, new_h / height, float(pad_x), float(pad_y)])
        sizes[i] = torch.tensor([float(height), float(width)])
    return batch, params.to(device), sizes.to(device)


class InferenceModel(nn.Module):
    """Pre-processing + ``Detector`` + decode + NMS.

    Args:
        detector: a trained ``Detector`` (normalization is inside it).
        input_size, resize_mode: the square model input and ``letterbox`` / ``stretch``, as in training.
        conf_threshold, iou_threshold, max_detections, pre_nms_topk: see ``decode.decode_grid``.
        channels_last: run the model in NHWC memory format (faster on CPU; same numbers).
    """

    def __init__(
        self,
        detector: Detector,
        input_size: int,
        resize_mode: str = "letterbox",
        conf_threshold: float = DEFAULT_CONF_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        pre_nms_topk: int = 1000,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if resize_mode not in ("letterbox", "stretch"):
            raise ValueError(f"resize_mode must be letterbox or stretch, got '{resize_mode}'")
        self.detector = detector.eval()
        self.input_size = input_size
        self.stretch = resize_mode == "stretch"
        self.num_boxes = detector.num_boxes
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.pre_nms_topk = pre_nms_topk
        self.channels_last = channels_last
        self.pad_value = PAD_VALUE  # an attribute: TorchScript cannot read module-level globals
        if channels_last:
            self.detector = self.detector.to(memory_format=torch.channels_last)

    @torch.jit.export
    def preprocess(self, images: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Resize each ``uint8 [3, H, W]`` image into the model input.

        Returns ``(batch uint8 [N, 3, size, size], letterbox params [N, 4] = (scale_x, scale_y, pad_x,
        pad_y), original sizes [N, 2] = (height, width))``.
        """
        return resize_batch(images, self.input_size, self.stretch, self.pad_value, self.detector.mean.device)

    @torch.jit.export
    def predict_raw(self, batch: Tensor) -> Tensor:
        """The model alone: ``uint8 [N, 3, size, size]`` -> raw grid ``[N, S, S, B*5 + C]``."""
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.detector(batch)

    @torch.jit.export
    def postprocess(self, raw: Tensor, params: Tensor, sizes: Tensor) -> list[dict[str, Tensor]]:
        """Decode + NMS in original-image pixels (see ``decode.decode_grid``)."""
        return decode_grid(
            raw,
            self.num_boxes,
            (self.input_size, self.input_size),
            params,
            sizes,
            self.conf_threshold,
            self.iou_threshold,
            self.max_detections,
            self.pre_nms_topk,
        )

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        with torch.no_grad():  # inference only: no autograd graph, as users of an exported file expect
            batch, params, sizes = self.preprocess(images)
            return self.postprocess(self.predict_raw(batch), params, sizes)
