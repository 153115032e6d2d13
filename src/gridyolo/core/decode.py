"""Raw grid -> detections in original-image pixels: scores, threshold, per-class NMS, cap per image.

Vectorized over the whole batch (one top-k, one ``batched_nms`` call); TorchScript-safe.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from gridyolo.core.decode_settings import DEFAULT_CONF_THRESHOLD, DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_DETECTIONS
from gridyolo.core.grid import activate, cell_boxes
from gridyolo.core.targets import BatchTargets


def decode_grid(
    raw: Tensor,
    num_boxes: int,
    input_hw: tuple[int, int],
    letterbox: Tensor | None = None,
    orig_sizes: Tensor | None = None,
    conf_threshold: float = DEFAULT_CONF_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    pre_nms_topk: int = 1000,
) -> list[dict[str, Tensor]]:
    """Decode a raw grid into per-image detections.

    The score of box b for class c is ``conf_b × P(c | object)`` (YOLOv1's class-specific confidence);
    every (box, class) pair whose score passes ``conf_threshold`` is a candidate, at most
    ``pre_nms_topk`` per image. NMS runs per image and per class (``torchvision.ops.batched_nms``) in
    original-image pixels; then at most ``max_detections`` per image, highest score first.

    Args:
        raw: ``(N, S, S, B*5 + C)`` model output.
        num_boxes: B.
        input_hw: ``(height, width)`` of the model input in pixels.
        letterbox: ``[N, 4]`` ``(scale_x, scale_y, pad_x, pad_y)`` per image (``x_in = x * scale + pad``);
            ``None``: boxes stay in input pixels.
        orig_sizes: ``[N, 2]`` ``(height, width)`` to clip to; ``None``: clip to the input.

    Returns:
        N dicts with ``boxes`` float32 ``[K, 4]`` xyxy (original pixels), ``scores`` ``[K]``,
        ``labels`` int64 ``[K]``.
    """
    n = raw.shape[0]
    boxes, scores, num_classes = _scored_boxes(raw, num_boxes, input_hw)
    cand_boxes, cand_scores, cand_image, cand_label = _candidates(boxes, scores, num_classes, conf_threshold,
                                                                  pre_nms_topk)  # fmt: skip
    cand_boxes = _to_original_pixels(cand_boxes, cand_image, input_hw, letterbox, orig_sizes)
    kept, counts = _nms_per_image(cand_boxes, cand_scores, cand_image * num_classes + cand_label, cand_image, n,
                                  iou_threshold, max_detections)  # fmt: skip
    split_sizes = torch.jit.annotate(list[int], counts.tolist())
    out: list[dict[str, Tensor]] = []
    for b, s, lab in zip(
        cand_boxes[kept].split(split_sizes), cand_scores[kept].split(split_sizes), cand_label[kept].split(split_sizes)
    ):
        out.append({"boxes": b, "scores": s, "labels": lab})
    return out


def _scored_boxes(raw: Tensor, num_boxes: int, input_hw: tuple[int, int]) -> tuple[Tensor, Tensor, int]:
    """Every predictor's box in input pixels ``[N, S*S*B, 4]`` and every (box, class) score
    ``conf × P(class)`` ``[N, S*S*B*C]``, and C."""
    n = raw.shape[0]
    pred = activate(raw.float(), num_boxes)
    num_classes = pred.class_prob.shape[-1]
    height, width = input_hw
    boxes = cell_boxes(pred.xy, pred.sqrt_wh).reshape(n, -1, 4)
    boxes = boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    scores = (pred.conf.unsqueeze(-1) * pred.class_prob.unsqueeze(3)).reshape(n, -1)  # [N, S*S*B*C]
    return boxes, scores, num_classes


def _candidates(
    boxes: Tensor, scores: Tensor, num_classes: int, conf_threshold: float, pre_nms_topk: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The (box, class) pairs among each image's ``pre_nms_topk`` best that score above the threshold:
    boxes ``[K, 4]``, scores ``[K]``, image index ``[K]``, label ``[K]``."""
    n = scores.shape[0]
    k = min(pre_nms_topk, scores.shape[1])
    top_scores, top_index = scores.topk(k, dim=1)
    image_index = torch.arange(n, device=scores.device).unsqueeze(1).expand(n, k)
    keep = top_scores > conf_threshold
    cand_image, cand_index = image_index[keep], top_index[keep]
    return boxes[cand_image, cand_index // num_classes], top_scores[keep], cand_image, cand_index % num_classes


def _to_original_pixels(
    boxes: Tensor, image: Tensor, input_hw: tuple[int, int], letterbox: Tensor | None, orig_sizes: Tensor | None
) -> Tensor:
    """Input-pixel boxes ``[K, 4]`` of images ``image`` ``[K]`` -> original pixels (letterbox undone),
    clipped to the original image (to the input when ``orig_sizes`` is ``None``)."""
    height, width = input_hw
    if letterbox is not None:
        params = letterbox.to(boxes)[image]
        scale = torch.stack([params[:, 0], params[:, 1], params[:, 0], params[:, 1]], dim=1)
        shift = torch.stack([params[:, 2], params[:, 3], params[:, 2], params[:, 3]], dim=1)
        boxes = (boxes - shift) / scale
    if orig_sizes is not None:
        limits = orig_sizes.to(boxes)[image]  # (height, width)
    else:
        limits = torch.tensor([[float(height), float(width)]], device=boxes.device).expand(boxes.shape[0], 2)
    zeros = torch.zeros_like(limits[:, 0])
    return torch.stack(
        [
            torch.minimum(torch.maximum(boxes[:, 0], zeros), limits[:, 1]),
            torch.minimum(torch.maximum(boxes[:, 1], zeros), limits[:, 0]),
            torch.minimum(torch.maximum(boxes[:, 2], zeros), limits[:, 1]),
            torch.minimum(torch.maximum(boxes[:, 3], zeros), limits[:, 0]),
        ],
        dim=1,
    )


def _nms_per_image(
    boxes: Tensor, scores: Tensor, groups: Tensor, image: Tensor, n: int, iou_threshold: float, max_detections: int
) -> tuple[Tensor, Tensor]:
    """NMS within each (image, class) group, then at most ``max_detections`` per image: the kept
    indices, grouped by image and by score inside each, and how many each of the ``n`` images keeps."""
    kept = batched_nms(boxes, scores, groups, iou_threshold)
    # kept is sorted by score; a stable sort by image keeps that order inside each image.
    kept = kept[torch.sort(image[kept], stable=True).indices]
    kept_image = image[kept]
    counts = torch.bincount(kept_image, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.shape[0], device=boxes.device) - starts[kept_image]
    return kept[rank < max_detections], counts.clamp(max=max_detections)


def decode_targets_batch(
    raw: Tensor,
    num_boxes: int,
    input_hw: tuple[int, int],
    targets: BatchTargets | list[dict[str, Tensor]],
    conf_threshold: float = DEFAULT_CONF_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> list[dict[str, Tensor]]:
    """``decode_grid`` for a loader batch: letterbox params and original sizes come from its targets
    (a packed ``BatchTargets`` holds them stacked already)."""
    packed = isinstance(targets, BatchTargets)
    return decode_grid(
        raw,
        num_boxes,
        input_hw,
        letterbox=targets.letterbox if packed else torch.stack([t["letterbox"] for t in targets]),
        orig_sizes=targets.orig_size if packed else torch.stack([t["orig_size"] for t in targets]),
        conf_threshold=conf_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )


def peak_scores(raw: Tensor, num_boxes: int) -> Tensor:
    """``[N]``: the highest ``conf × P(class)`` of each image's grid, before any threshold (what a run
    that found nothing reports, so the user sees how far below ``--conf`` the model scored)."""
    pred = activate(raw.float(), num_boxes)
    return (pred.conf * pred.class_prob.amax(dim=-1, keepdim=True)).flatten(1).amax(dim=1)
