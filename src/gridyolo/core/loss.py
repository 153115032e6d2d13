"""YOLOv1's loss (Redmon et al., 2016, eq. 3), vectorized over the batch; targets assigned on the fly.

Each of its three parts has a named alternative that keeps the head's contract ``(N, S, S, B*5 + C)``
and decoding unchanged (``box_loss``, ``conf_loss``, ``class_loss``; all ``sse`` is YOLOv1's loss).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    box_convert,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from gridyolo.core.grid import activate, assign_cells, box_counts, cell_boxes, flatten_targets, paired_box_iou
from gridyolo.core.targets import BatchTargets

BOX_LOSSES = ("sse", "giou", "diou", "ciou", "sse+giou", "sse+diou", "sse+ciou")
_IOU_LOSSES = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}
BoxLoss = Literal["sse", "giou", "diou", "ciou", "sse+giou", "sse+diou", "sse+ciou"]
ConfLoss = Literal["sse", "bce"]
ClassLoss = Literal["sse", "ce"]
Assign = Literal["responsible", "all_predictors"]


class YoloV1Loss(nn.Module):
    """Sum-squared error on coordinates, confidences and class probabilities, divided by batch size.

    For each object (see ``grid.assign_cells``: one object per cell; when several share a cell, the
    largest box wins and the others are not targets):

    - the *responsible* predictor is the one of the cell's B predictors whose box has the highest IoU
      with the object (ties: the first); when none overlaps it, the one whose (cx, cy, w, h) is closest
      to the object's (Darknet's fallback; otherwise the first predictor would always be chosen);
    - ``coord = λcoord · Σ_resp [(x - x̂)² + (y - ŷ)² + (√w - √ŵ)² + (√h - √ĥ)²]`` with x, y in cell
      units and w, h as fractions of the input;
    - ``obj = Σ_resp (conf - IoU)²``: the responsible confidence is pulled towards its (detached) IoU;
    - ``noobj = λnoobj · Σ_other conf²`` over every predictor that is not responsible for an object,
      including the non-responsible predictors of cells that do hold an object;
    - ``cls = Σ_cells with an object Σ_c (p_c - 1[c = label])²``.

    The alternatives (``b̂``: the responsible box, ``b``: the object's, both xyxy fractions of the input;
    ``t_c``: the confidence logit, ``σ(t_c) = conf``; ``z``: the class logits):

    - ``box_loss="giou" | "diou" | "ciou"``: ``coord = λcoord · Σ_resp L(b̂, b)`` with torchvision's
      ``generalized_box_iou_loss`` (``1 - IoU + |C \\ (b̂ ∪ b)| / |C|``, C the enclosing box),
      ``distance_box_iou_loss`` (``1 - IoU + ρ²(centres) / c²``, c the enclosing diagonal) or
      ``complete_box_iou_loss`` (DIoU ``+ α·v``, v the aspect-ratio term); ``"sse+giou"`` etc. add the
      IoU term to the squared error instead of replacing it. The gradient reaches x, y, √w, √h through
      ``cell_boxes``.
    - ``conf_loss="bce"`` (IoU-aware): ``obj = Σ_resp BCE(t_c, IoU)`` towards the detached IoU,
      ``noobj = λnoobj · Σ_other BCE(t_c, 0)``, with logits (no vanishing gradient of a saturated sigmoid).
    - ``class_loss="ce"``: ``cls = Σ_cells with an object CE(z, label)`` on the logits.

    Which predictors learn an object (the decoding is the same for all):

    - ``assign="all_predictors"``: every one of the cell's B predictors is a positive for its object
      (coord and obj terms for each, none in noobj), not only the responsible one: B times the box
      signal per object; NMS removes the duplicates at decode time, as it does for neighbouring cells.
    - ``ignore_iou=t`` (YOLOv2's rule): a predictor that is not a positive but whose box overlaps an
      object of its image with IoU > t is left out of noobj, so a good box in a neighbouring cell is not
      pushed to confidence 0. ``None``: every non-positive predictor is in noobj (YOLOv1).

    Args:
        grid_size, num_boxes, num_classes: S, B, C of the raw grid.
        lambda_coord, lambda_noobj: 5 and 0.5 in the paper.
        box_loss, conf_loss, class_loss: see above; ``sse`` everywhere is YOLOv1's loss.
        assign, ignore_iou: see above; ``responsible`` and ``None`` are YOLOv1's.

    ``forward(raw, targets, input_hw)``: ``raw`` is ``(N, S, S, B*5 + C)``; ``targets`` a list of N dicts
    with ``boxes`` ``[K, 4]`` xyxy in input pixels and ``labels`` ``[K]``; ``input_hw`` the input
    ``(height, width)``. Returns a dict of scalar tensors ``coord``, ``obj``, ``noobj``, ``cls``, ``total``.
    """

    def __init__(
        self,
        grid_size: int,
        num_boxes: int,
        num_classes: int,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        box_loss: BoxLoss = "sse",
        conf_loss: ConfLoss = "sse",
        class_loss: ClassLoss = "sse",
        assign: Assign = "responsible",
        ignore_iou: float | None = None,
    ) -> None:
        super().__init__()
        if box_loss not in BOX_LOSSES or conf_loss not in ("sse", "bce") or class_loss not in ("sse", "ce"):
            raise ValueError(f"unknown loss: box_loss {box_loss}, conf_loss {conf_loss}, class_loss {class_loss}")
        if assign not in ("responsible", "all_predictors") or not (ignore_iou is None or 0 <= ignore_iou <= 1):
            raise ValueError(f"unknown assignment: assign {assign}, ignore_iou {ignore_iou}")
        self.assign, self.ignore_iou = assign, ignore_iou
        self.grid_size = grid_size
        self.num_boxes = num_boxes
        self.num_classes = num_classes
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj
        self.box_loss, self.conf_loss, self.class_loss = box_loss, conf_loss, class_loss

    def forward(
        self, raw: Tensor, targets: BatchTargets | list[dict[str, Tensor]], input_hw: tuple[int, int]
    ) -> dict[str, Tensor]:
        expected = (self.grid_size, self.grid_size, self.num_boxes * 5 + self.num_classes)
        if tuple(raw.shape[1:]) != expected:
            raise ValueError(f"raw grid has shape {tuple(raw.shape)}, expected (N, {', '.join(map(str, expected))})")
        raw = raw.float()  # the loss in fp32 also under mixed precision
        batch_size = raw.shape[0]
        pred = activate(raw, self.num_boxes)
        boxes, labels, batch = flatten_targets(targets, input_hw, raw.device)
        cells = assign_cells(boxes, labels, batch, self.grid_size)

        # Predictors of the object cells: [M, B, ...]
        at = (cells.batch, cells.row, cells.col)
        xy, sqrt_wh, conf = pred.xy[at], pred.sqrt_wh[at], pred.conf[at]
        pred_boxes = cell_boxes(pred.xy, pred.sqrt_wh)[at]  # [M, B, 4]
        iou = paired_box_iou(pred_boxes.detach(), cells.box[:, None, :])  # [M, B]
        # Darknet's rule (detection_layer.c): the highest IoU (first on ties); while no predictor overlaps
        # the object, the closest one by squared distance of (cx, cy, w, h), so every predictor can learn
        distance = ((box_convert(pred_boxes.detach(), "xyxy", "cxcywh")
                     - box_convert(cells.box, "xyxy", "cxcywh")[:, None, :]) ** 2).sum(-1)  # fmt: skip
        resp = torch.where(iou.amax(dim=1) > 0, iou.argmax(dim=1), distance.argmin(dim=1))
        if self.assign == "all_predictors":  # [P] rows: (object, predictor) pairs, every predictor of the cell
            m = torch.arange(len(resp), device=raw.device).repeat_interleave(self.num_boxes)
            resp = torch.arange(self.num_boxes, device=raw.device).repeat(len(cells.batch))
        else:
            m = torch.arange(len(resp), device=raw.device)

        coord = raw.new_zeros(())
        if self.box_loss.startswith("sse"):
            coord = ((xy[m, resp] - cells.xy[m]) ** 2).sum() + ((sqrt_wh[m, resp] - cells.sqrt_wh[m]) ** 2).sum()
        iou_kind = self.box_loss.split("+")[-1]
        if iou_kind in _IOU_LOSSES:
            pred_box, object_box = _at_least(pred_boxes[m, resp]), _at_least(cells.box[m])
            coord = coord + _IOU_LOSSES[iou_kind](pred_box, object_box, reduction="sum", eps=1e-7)

        responsible = torch.zeros_like(pred.conf, dtype=torch.bool)
        responsible[cells.batch[m], cells.row[m], cells.col[m], resp] = True  # (cell, predictor) pairs are unique
        negative = ~responsible
        if self.ignore_iou is not None:
            negative &= ~self._overlaps_an_object(cell_boxes(pred.xy, pred.sqrt_wh).detach(), boxes, batch,
                                                  box_counts(targets))
        if self.conf_loss == "sse":
            obj = ((conf[m, resp] - iou[m, resp]) ** 2).sum()
            noobj = (pred.conf[negative] ** 2).sum()
        else:
            logit = raw[..., : self.num_boxes * 5].reshape(*pred.conf.shape, 5)[..., 4]  # [N, S, S, B]
            obj = F.binary_cross_entropy_with_logits(logit[at][m, resp], iou[m, resp], reduction="sum")
            other = logit[negative]
            noobj = F.binary_cross_entropy_with_logits(other, torch.zeros_like(other), reduction="sum")

        if self.class_loss == "sse":
            onehot = F.one_hot(cells.label, self.num_classes).to(raw.dtype)
            cls = ((pred.class_prob[at] - onehot) ** 2).sum()
        else:
            cls = F.cross_entropy(raw[..., self.num_boxes * 5 :][at], cells.label, reduction="sum")

        terms = {
            "coord": self.lambda_coord * coord / batch_size,
            "obj": obj / batch_size,
            "noobj": self.lambda_noobj * noobj / batch_size,
            "cls": cls / batch_size,
        }
        terms["total"] = terms["coord"] + terms["obj"] + terms["noobj"] + terms["cls"]
        return terms


    def _overlaps_an_object(self, pred_boxes: Tensor, boxes: Tensor, batch: Tensor, counts: list[int]) -> Tensor:
        """``[N, S, S, B]``: whether each predicted box (xyxy fractions) has IoU > ``ignore_iou`` with an
        object of its own image (``boxes`` ``[M, 4]`` image by image, ``batch`` ``[M]``, ``counts`` the boxes
        per image). All images at once: each image's objects padded to the most any image has (a host-side
        number, so no device sync), the padding masked out of the maximum."""
        n, s1, s2, b, _ = pred_boxes.shape
        flat = pred_boxes.reshape(n, s1 * s2 * b, 4)
        most = max(counts, default=0)
        if most == 0:
            return torch.zeros(n, s1, s2, b, dtype=torch.bool, device=pred_boxes.device)
        starts = torch.tensor([0, *counts[:-1]], device=boxes.device).cumsum(0)
        slot = torch.arange(len(boxes), device=boxes.device) - starts[batch]
        padded = boxes.new_zeros(n, most, 4)
        padded[batch, slot] = boxes
        valid = torch.zeros(n, most, dtype=torch.bool, device=boxes.device)
        valid[batch, slot] = True
        best = _batched_box_iou(flat, padded).masked_fill(~valid[:, None, :], -1.0).amax(dim=2)
        return (best > self.ignore_iou).reshape(n, s1, s2, b)


def _batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """torchvision's ``box_iou`` for each image of a batch: ``[N, P, 4]`` and ``[N, K, 4]`` xyxy to
    ``[N, P, K]``, element for element the same arithmetic (so the same floats as one call per image)."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    lt = torch.max(boxes1[:, :, None, :2], boxes2[:, None, :, :2])
    rb = torch.min(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, :, None] + area2[:, None, :] - inter
    return inter / union


def _at_least(boxes: Tensor, size: float = 1e-6) -> Tensor:
    """xyxy boxes (fractions of the input) at least ``size`` wide and high, about the same centre: CIoU's
    aspect term ``atan(w / h)`` is 0 / 0 for a box of no area (a predicted √w of ~0, a 1-px object)."""
    cxcywh = box_convert(boxes, "xyxy", "cxcywh")
    return box_convert(torch.cat([cxcywh[..., :2], cxcywh[..., 2:].clamp(min=size)], dim=-1), "cxcywh", "xyxy")
