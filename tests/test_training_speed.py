"""What the faster training path must keep: the same batches, losses and EMA as the code it replaced."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from conftest import CountingReader
from gridyolo.core.loss import YoloV1Loss
from gridyolo.core.targets import BatchTargets
from gridyolo.data.dataset import DetectionDataset, collate_detections
from gridyolo.data.transforms import AugmentConfig, TrainTransform
from gridyolo.models import build_detector
from gridyolo.training.ema import EmaUpdater, ema_multi_avg_fn
from gridyolo.training.finite_check import FiniteLossCheck, NonFiniteLossError


def _targets(seed: int, images: int = 5, size: int = 128) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(images):
        k = int(torch.randint(0, 6, (1,), generator=g))  # some images without boxes
        xy = torch.rand(k, 2, generator=g) * size * 0.8
        wh = torch.rand(k, 2, generator=g) * size * 0.4 + 1
        labels = torch.randint(0, 3, (k,), generator=g)
        out.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=size)], 1), "labels": labels,
                    "image_id": torch.tensor(100 + i), "orig_size": torch.tensor([480, 640]),
                    "letterbox": torch.tensor([0.2, 0.2, 0.0, 16.0])})  # fmt: skip
    return out


def test_batch_targets_read_as_the_list_they_pack_and_survive_a_worker():
    items = _targets(0)
    packed = BatchTargets.from_items(items)
    assert len(packed) == len(items) and packed.counts == tuple(len(t["labels"]) for t in items)
    for item, view in zip(items, packed):
        assert view.keys() == item.keys() and all(torch.equal(view[k], item[k]) for k in item)
    assert torch.equal(packed[-1]["boxes"], items[-1]["boxes"])
    with pytest.raises(IndexError):
        packed[len(items)]
    assert torch.equal(packed.image_index, torch.cat([torch.full((len(t["labels"]),), i) for i, t in enumerate(items)]))
    again = pickle.loads(pickle.dumps(packed))
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(again, packed))
    loader = DataLoader([(torch.zeros(3, 8, 8, dtype=torch.uint8), t) for t in items], batch_size=5, num_workers=1,
                        collate_fn=collate_detections)  # fmt: skip
    images, crossed = next(iter(loader))  # through a worker's shared memory
    assert isinstance(crossed, BatchTargets) and images.shape == (5, 3, 8, 8)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(crossed, items) for k in b)
    moved = crossed.to("cpu")
    assert moved.counts == crossed.counts and torch.equal(moved.letterbox, crossed.letterbox)


def _old_overlaps(loss: YoloV1Loss, pred_boxes, boxes, batch):
    """The per-image loop the batched rule replaced (one box_iou and one device read per image)."""
    n, s1, s2, b, _ = pred_boxes.shape
    flat = pred_boxes.reshape(n, s1 * s2 * b, 4)
    overlaps = torch.zeros(n, s1 * s2 * b, dtype=torch.bool)
    for image in batch.unique().tolist():
        overlaps[image] = box_iou(flat[image], boxes[batch == image]).amax(dim=1) > loss.ignore_iou
    return overlaps.reshape(n, s1, s2, b)


@pytest.mark.parametrize("seed", range(4))
def test_packed_targets_and_the_batched_ignore_rule_give_the_same_loss_to_the_bit(seed, monkeypatch):
    items = _targets(seed)
    raw = torch.randn(len(items), 4, 4, 2 * 5 + 3, generator=torch.Generator().manual_seed(seed)) * 2
    for options in ({}, {"ignore_iou": 0.3, "assign": "all_predictors"}, {"ignore_iou": 0.0, "conf_loss": "bce",
                                                                          "box_loss": "sse+ciou", "class_loss": "ce"}):
        loss = YoloV1Loss(4, 2, 3, **options)
        listed, packed = loss(raw, items, (128, 128)), loss(raw, BatchTargets.from_items(items), (128, 128))
        assert listed.keys() == packed.keys() and all(torch.equal(listed[k], packed[k]) for k in listed)
        if "ignore_iou" in options:
            with monkeypatch.context() as patch:
                patch.setattr(YoloV1Loss, "_overlaps_an_object",
                              lambda self, p, bx, bt, counts: _old_overlaps(self, p, bx, bt))  # fmt: skip
                reference = loss(raw, items, (128, 128))
            assert all(torch.equal(reference[k], packed[k]) for k in reference), options


def test_reading_mosaic_partners_only_when_used_keeps_every_sample(bccd_reader):
    """At mosaic 0.5 the three other images are read only for the items whose Mosaic draw succeeds; every
    item is pixel for pixel and box for box what reading them always gave."""
    reads = []

    class AlwaysReads(TrainTransform):  # the behaviour before: every item read its three partners
        def mosaic_will_apply(self) -> bool:
            return True

    augment = AugmentConfig(mosaic=0.5)
    lazy_transform = TrainTransform(160, "letterbox", augment, seed=3)
    lazy = DetectionDataset(CountingReader(bccd_reader, reads), lazy_transform, seed=3)
    eager = DetectionDataset(bccd_reader, AlwaysReads(160, "letterbox", augment, seed=3), seed=3)
    mosaics = 0
    for index in range(24):
        reads.clear()
        (image, target), (expected_image, expected) = lazy[(1, index)], eager[(1, index)]
        assert torch.equal(image, expected_image) and torch.equal(target["boxes"], expected["boxes"])
        assert torch.equal(target["labels"], expected["labels"])
        assert len(reads) in (1, 4)
        mosaics += len(reads) == 4
    assert 4 <= mosaics <= 20  # both kinds of item were drawn


def test_the_ema_updater_is_averaged_models_update_to_the_bit():
    torch.manual_seed(0)
    model = build_detector("darknet_tiny", 3, 2, 2, None, 16)
    stock = AveragedModel(copy.deepcopy(model), multi_avg_fn=ema_multi_avg_fn(0.99, 3.0), use_buffers=True)
    ours = AveragedModel(copy.deepcopy(model), multi_avg_fn=ema_multi_avg_fn(0.99, 3.0), use_buffers=True)
    updater = EmaUpdater(0.99, 3.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(4):
        model(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        stock.update_parameters(model)
        updater.update(ours, model)
        if step == 1:
            updater.reset()  # as after a restored checkpoint: the count is read again from n_averaged
    assert int(ours.n_averaged) == int(stock.n_averaged) == 4
    for a, b in zip(stock.state_dict().values(), ours.state_dict().values()):
        assert torch.equal(a, b)


def test_a_deferred_finite_check_raises_with_the_step_it_saw():
    class Passed:  # a CUDA event that has passed (no GPU here: the deferred path's bookkeeping alone)
        def synchronize(self):
            pass

    check = FiniteLossCheck()
    losses = {"coord": torch.tensor(float("nan")), "total": torch.tensor(float("nan"))}
    check._pending = (torch.tensor(False), Passed(), losses, 2, 17)
    with pytest.raises(NonFiniteLossError, match="epoch 2 step 17: coord=nan"):
        check.raise_pending()
    check.raise_pending()  # read once: nothing pending any more
    check.check({"total": torch.tensor(1.0)}, 0, 0)  # finite, on the CPU: checked at once
    with pytest.raises(NonFiniteLossError, match="epoch 0 step 1"):
        check.check({"total": torch.tensor(float("inf"))}, 0, 1)
