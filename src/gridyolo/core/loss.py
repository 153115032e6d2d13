"""YOLOv1's loss (Redmon et al., 2016, eq. 3), vectorized over the batch; targets assigned on the fly."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from gridyolo.core.grid import activate, assign_cells, cell_boxes, flatten_targets, paired_box_iou


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

    Args:
        grid_size, num_boxes, num_classes: S, B, C of the raw grid.
        lambda_coord, lambda_noobj: 5 and 0.5 in the paper.

    ``forward(raw, targets, input_hw)``: ``raw`` is ``(N, S, S, B*5 + C)``; ``targets`` a list of N dicts
    with ``boxes`` ``[K, 4]`` xyxy in input pixels and ``labels`` ``[K]``; ``input_hw`` the input
    ``(height, width)``. Returns a dict of scalar tensors ``coord``, ``obj``, ``noobj``, ``cls``, ``total``.
    """

    def __init__(
        self, grid_size: int, num_boxes: int, num_classes: int, lambda_coord: float = 5.0, lambda_noobj: float = 0.5
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.num_boxes = num_boxes
        self.num_classes = num_classes
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj

    def forward(self, raw: Tensor, targets: list[dict[str, Tensor]], input_hw: tuple[int, int]) -> dict[str, Tensor]:
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
        m = torch.arange(len(resp), device=raw.device)

        coord = ((xy[m, resp] - cells.xy) ** 2).sum() + ((sqrt_wh[m, resp] - cells.sqrt_wh) ** 2).sum()
        obj = ((conf[m, resp] - iou[m, resp]) ** 2).sum()

        responsible = torch.zeros_like(pred.conf, dtype=torch.bool)
        responsible[cells.batch, cells.row, cells.col, resp] = True  # cells are unique: no duplicate writes
        noobj = (pred.conf[~responsible] ** 2).sum()

        onehot = torch.nn.functional.one_hot(cells.label, self.num_classes).to(raw.dtype)
        cls = ((pred.class_prob[at] - onehot) ** 2).sum()

        terms = {
            "coord": self.lambda_coord * coord / batch_size,
            "obj": obj / batch_size,
            "noobj": self.lambda_noobj * noobj / batch_size,
            "cls": cls / batch_size,
        }
        terms["total"] = terms["coord"] + terms["obj"] + terms["noobj"] + terms["cls"]
        return terms
