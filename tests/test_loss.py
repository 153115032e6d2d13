"""YOLOv1 loss: tests for the bugs known in public reimplementations."""

from __future__ import annotations

import pytest
import torch

from gridyolo.core.grid import assign_cells, encode_raw
from gridyolo.core.loss import YoloV1Loss

S, B, C = 7, 2, 3
HW = (448, 448)


def _targets(*boxes_labels):
    return [
        {
            "boxes": torch.tensor([b for b, _ in bl], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([lab for _, lab in bl], dtype=torch.int64),
        }
        for bl in boxes_labels
    ]


def test_perfect_prediction_gives_zero_loss():
    targets = _targets([([10, 20, 100, 200], 1), ([300, 300, 440, 440], 2)], [([64, 64, 128, 128], 0)])
    loss = YoloV1Loss(S, B, C)(encode_raw(targets, HW, S, B, C), targets, HW)
    assert loss["coord"] < 1e-9 and loss["cls"] < 1e-9
    assert loss["total"] < 1e-6


def test_non_responsible_predictor_confidence_pushed_to_zero():
    targets = _targets([([100, 100, 200, 200], 1)])
    raw = encode_raw(targets, HW, S, B, C)
    row, col = 2, 2  # centre (150, 150) -> cell (2, 2) at 64 px per cell
    raw[0, row, col, 5:8] = raw[0, row, col, 0:3] * 0  # predictor 1: a wrong box (centre of cell, tiny)...
    raw[0, row, col, 8] = -3.0
    raw[0, row, col, 9] = 3.0  # ...with high confidence
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C)(raw, targets, HW)
    assert loss["noobj"] > 0.4  # 0.5 * sigmoid(3)^2
    loss["total"].backward()
    assert raw.grad[0, row, col, 9] > 0  # gradient descent lowers that confidence
    assert raw.grad[0, row, col, 4].abs() < 1e-6  # the responsible one is already right


def test_responsible_is_highest_iou_and_its_target_is_that_iou():
    targets = _targets([([100, 100, 200, 200], 0)])
    raw = encode_raw(targets, HW, S, B, C)
    raw[0, 2, 2, 0:4] = torch.tensor([0.0, 0.0, -1.0, -1.0])  # predictor 0 now a worse box
    raw[0, 2, 2, 4] = 0.0  # conf 0.5
    raw[0, 2, 2, 9] = 0.0  # predictor 1 keeps the perfect box, conf 0.5
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C)(raw, targets, HW)
    # predictor 1 is responsible: obj = (0.5 - 1)^2; predictor 0 is pushed to 0: noobj = 0.5 * 0.5^2
    assert torch.isclose(loss["obj"], torch.tensor(0.25), atol=1e-5)
    assert torch.isclose(loss["noobj"], torch.tensor(0.125), atol=1e-5)
    assert loss["coord"] < 1e-9


def test_object_on_cell_border_and_image_edge_gets_a_valid_cell():
    boxes = torch.tensor([[0.0, 0.0, 2 / 7, 2 / 7], [0.8, 0.8, 1.2, 1.2], [0.9, 0.0, 1.1, 0.1], [0.0, 0.0, 0.0, 0.0]])
    cells = assign_cells(boxes, torch.zeros(4, dtype=torch.long), torch.arange(4), S)
    assert cells.col.tolist() == [1, 6, 6, 0] and cells.row.tolist() == [1, 6, 0, 0]
    assert ((cells.xy >= 0) & (cells.xy <= 1)).all()
    targets = _targets([([0, 0, 128, 128], 0), ([448 - 30, 448 - 30, 448 + 30, 448 + 30], 1), ([0, 200, 0, 200], 2)])
    loss = YoloV1Loss(S, B, C)(torch.randn(1, S, S, B * 5 + C), targets, HW)
    assert all(torch.isfinite(v) for v in loss.values())


def test_gradients_finite_for_tiny_boxes():
    targets = _targets([([100, 100, 100.0001, 100.0001], 0), ([300, 300, 300, 301], 1)])
    raw = torch.randn(1, S, S, B * 5 + C)
    raw[..., 2:4] = -30.0  # predicted sqrt(w), sqrt(h) ~ 1e-13
    raw[..., 7:9] = -30.0
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C)(raw, targets, HW)
    loss["total"].backward()
    assert torch.isfinite(loss["total"]) and torch.isfinite(raw.grad).all()


def test_image_without_objects_gives_only_noobj_loss():
    raw = torch.randn(2, S, S, B * 5 + C)
    loss = YoloV1Loss(S, B, C)(raw, _targets([], []), HW)
    assert loss["coord"] == 0 and loss["obj"] == 0 and loss["cls"] == 0
    expected = 0.5 * (raw[..., [4, 9]].sigmoid() ** 2).sum() / 2
    assert torch.isclose(loss["noobj"], expected) and torch.isclose(loss["total"], expected)


def test_two_objects_in_one_cell_largest_wins():
    small, large = [70, 70, 90, 90], [40, 40, 120, 120]  # both centred in cell (1, 1)
    for order in ([(small, 0), (large, 1)], [(large, 1), (small, 0)]):
        targets = _targets(order)
        raw = encode_raw(targets, HW, S, B, C)
        loss = YoloV1Loss(S, B, C)(raw, targets, HW)
        assert loss["total"] < 1e-6  # the perfect grid holds the large box only, whatever the order
        assert raw[0, 1, 1, B * 5 + 1] > 0 and raw[0, 1, 1, B * 5] < 0


def test_loss_sums_and_divides_by_batch():
    targets = _targets([([10, 20, 100, 200], 1)])
    raw = torch.randn(1, S, S, B * 5 + C)
    one = YoloV1Loss(S, B, C)(raw, targets, HW)
    two = YoloV1Loss(S, B, C)(raw.repeat(2, 1, 1, 1), targets * 2, HW)
    for key in one:
        assert torch.isclose(one[key], two[key], rtol=1e-5)


OPTIONS = [("sse", "sse", "sse"), ("giou", "sse", "sse"), ("diou", "bce", "ce"), ("ciou", "bce", "ce"),
           ("sse+ciou", "bce", "ce"), ("sse+giou", "sse", "ce")]  # fmt: skip


@pytest.mark.parametrize(("box", "conf", "cls"), OPTIONS)
def test_every_loss_option_is_minimal_at_the_perfect_prediction(box, conf, cls):
    targets = _targets([([10, 20, 100, 200], 1), ([300, 300, 440, 440], 2)], [([64, 64, 128, 128], 0)])
    perfect = encode_raw(targets, HW, S, B, C)
    loss_fn = YoloV1Loss(S, B, C, box_loss=box, conf_loss=conf, class_loss=cls)
    loss = loss_fn(perfect, targets, HW)
    assert set(loss) == {"coord", "obj", "noobj", "cls", "total"}
    # logits are clamped to ±16: BCE and CE leave ~1e-7 per term, the IoU losses ~1e-5 (box to 1e-5 px)
    assert loss["coord"] < 1e-4 and loss["cls"] < 1e-4 and loss["obj"] < 1e-4
    assert loss["noobj"] < 1e-4 * S * S * B
    worse = perfect.clone()
    for k in range(B):
        worse[..., 5 * k : 5 * k + 4] += 0.5  # every box moved and resized
    worse[..., 5 * B :] = worse[..., 5 * B :].flip(-1)  # every class wrong
    bad = loss_fn(worse, targets, HW)
    assert bad["coord"] > 10 * loss["coord"] + 1e-3 and bad["cls"] > 10 * loss["cls"] + 1e-3


@pytest.mark.parametrize("box", ["giou", "diou", "ciou"])
def test_iou_box_losses_pull_the_box_towards_the_object(box):
    targets = _targets([([100, 100, 200, 200], 1)])
    raw = encode_raw(targets, HW, S, B, C)
    row, col = 2, 2
    for k in range(B):  # both predictors (the first is responsible on the tie)
        raw[0, row, col, 5 * k] += 3.0  # the box sits right of the object's centre, poking out of it
        raw[0, row, col, 5 * k + 2] -= 0.3  # and is too narrow (inside it, GIoU could not see the shift)
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C, lambda_coord=1.0, box_loss=box)(raw, targets, HW)
    assert loss["coord"] > 0.01
    loss["total"].backward()
    assert raw.grad[0, row, col, 0] > 0  # descent moves the responsible centre back left
    assert raw.grad[0, row, col, 2] < 0  # and widens the box


def test_iou_aware_bce_confidence_and_cross_entropy_classes():
    targets = _targets([([100, 100, 200, 200], 1)])
    raw = encode_raw(targets, HW, S, B, C)
    row, col = 2, 2
    raw[0, row, col, 4] = -2.0  # the responsible confidence far below its IoU target (1.0)
    raw[0, row, col, 10:] = torch.tensor([2.0, 0.0, 1.0])  # class 0 preferred, label is 1
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C, conf_loss="bce", class_loss="ce")(raw, targets, HW)
    assert loss["obj"].item() == pytest.approx(torch.nn.functional.softplus(torch.tensor(2.0)).item(), rel=1e-4)
    expected_ce = -torch.log_softmax(torch.tensor([2.0, 0.0, 1.0]), 0)[1]
    assert loss["cls"].item() == pytest.approx(expected_ce.item(), rel=1e-4)
    loss["total"].backward()
    assert raw.grad[0, row, col, 4] < 0  # descent raises the confidence
    assert raw.grad[0, row, col, 11] < 0 and raw.grad[0, row, col, 10] > 0  # towards the label, away from 0


@pytest.mark.parametrize(("box", "conf", "cls"), OPTIONS)
def test_every_loss_option_has_finite_gradients_at_degenerate_boxes(box, conf, cls):
    targets = _targets([([100, 100, 100.0001, 100.0001], 0), ([300, 300, 300, 301], 1)])
    raw = torch.randn(1, S, S, B * 5 + C, generator=torch.Generator().manual_seed(0))
    raw[..., 2:4] = -30.0  # predicted sqrt(w), sqrt(h) ~ 1e-13: boxes of no area
    raw[..., 7:9] = -30.0
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C, box_loss=box, conf_loss=conf, class_loss=cls)(raw, targets, HW)
    loss["total"].backward()
    assert torch.isfinite(loss["total"]) and torch.isfinite(raw.grad).all()


def test_unknown_loss_option_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        YoloV1Loss(S, B, C, box_loss="iou")


def test_all_predictors_makes_every_predictor_of_the_cell_a_positive():
    targets = _targets([([100, 100, 200, 200], 1)])
    raw = encode_raw(targets, HW, S, B, C)  # both predictors hold the box; only predictor 0 is confident
    raw[0, 2, 2, 5:7] = 0.0  # predictor 1's centre moved to the middle of the cell
    raw.requires_grad_(True)
    responsible = YoloV1Loss(S, B, C, box_loss="sse+ciou", conf_loss="bce", class_loss="ce")(raw, targets, HW)
    everyone = YoloV1Loss(S, B, C, box_loss="sse+ciou", conf_loss="bce", class_loss="ce",
                          assign="all_predictors")(raw, targets, HW)  # fmt: skip
    assert responsible["coord"] < 1e-4 and everyone["coord"] > 0.01  # only now does predictor 1's box count
    everyone["total"].backward()
    assert raw.grad[0, 2, 2, 9] < 0  # its confidence is pulled up towards its IoU, not pushed to 0
    assert raw.grad[0, 2, 2, 5:7].abs().sum() > 0  # and its centre towards the object's
    perfect = encode_raw(targets, HW, S, B, C)
    perfect[0, 2, 2, 9] = 16.0  # every predictor right and confident: nothing left to learn
    loss = YoloV1Loss(S, B, C, assign="all_predictors")(perfect, targets, HW)
    assert loss["total"] < 1e-5


@pytest.mark.parametrize("ignore_iou, ignored", [(None, False), (0.5, True), (0.95, False)])
def test_ignore_iou_spares_a_good_box_in_a_neighbouring_cell(ignore_iou, ignored):
    targets = _targets([([100, 100, 200, 200], 1)])  # centre (150, 150): cell (2, 2)
    raw = encode_raw(targets, HW, S, B, C)
    # cell (2, 1) (x 64..128) predicts the object's box shifted left to x 127: IoU ~0.63, confident
    raw[0, 2, 1, 0:4] = torch.logit(torch.tensor([0.99, 150 / 64 - 2, (100 / 448) ** 0.5, (100 / 448) ** 0.5]))
    raw[0, 2, 1, 4] = 3.0
    raw.requires_grad_(True)
    loss = YoloV1Loss(S, B, C, ignore_iou=ignore_iou)(raw, targets, HW)
    loss["total"].backward()
    assert (raw.grad[0, 2, 1, 4].abs() < 1e-9) == ignored
    far = raw.grad[0, 5, 5, 4]  # a box far from any object is pushed down whatever the threshold
    assert far > 0


def test_assignment_options_are_checked():
    with pytest.raises(ValueError, match="assign"):
        YoloV1Loss(S, B, C, assign="nearest")
    with pytest.raises(ValueError, match="ignore_iou"):
        YoloV1Loss(S, B, C, ignore_iou=1.5)
