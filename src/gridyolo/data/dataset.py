"""Torch dataset over a reader + transform, and the collate function of ragged targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

from gridyolo.core.letterbox import EvalTransform
from gridyolo.core.targets import BatchTargets
from gridyolo.data.base import DetectionReader

if TYPE_CHECKING:  # the augmenting transform (albumentations) is not needed to evaluate
    from gridyolo.data.transforms import TrainTransform


class DetectionDataset(Dataset):
    """Items are ``(image uint8 [3, S, S], target)`` with ``target`` a dict of tensors:

    - ``boxes`` float32 ``[K, 4]`` xyxy in model-input pixels, ``labels`` int64 ``[K]``
    - ``image_id`` int64 scalar, ``orig_size`` int64 ``[2]`` (height, width) of the original image
    - ``letterbox`` float32 ``[4]`` ``(scale_x, scale_y, pad_x, pad_y)`` mapping original px to input px
      (``x_in = x * scale + pad``); NaN for augmented training items, whose geometry is random.

    Args:
        reader: any ``DetectionReader``.
        transform: ``TrainTransform`` (augmenting; Mosaic draws three other random items) or ``EvalTransform``.
        mosaic_epochs: Mosaic only in epochs ``0 .. mosaic_epochs - 1`` (``augment.close_mosaic``);
            ``None``: in every epoch.
    """

    def __init__(
        self,
        reader: DetectionReader,
        transform: TrainTransform | EvalTransform,
        seed: int = 0,
        rank: int = 0,
        mosaic_epochs: int | None = None,
    ) -> None:
        self.reader = reader
        self.transform = transform
        self.seed = seed
        self.rank = rank
        self.mosaic_epochs = mosaic_epochs
        self.epoch = 0
        self._rng = np.random.default_rng(seed)
        self._seeded_for: tuple[int, int] | None = None

    def _reseed(self) -> None:
        """Augmentation randomness is a function of (seed, epoch, rank, loader worker), so a resumed run
        draws what an uninterrupted one would have (albumentations ignores global seeds), and DDP ranks
        and workers draw different streams."""
        info = get_worker_info()
        key = (self.epoch, self.rank, info.id if info is not None else 0)
        if key != self._seeded_for:
            stream = np.random.SeedSequence([self.seed, *key]).generate_state(1)[0]
            self.transform.set_seed(int(stream))
            self._rng = np.random.default_rng(int(stream))
            self._seeded_for = key

    def _mosaic_now(self) -> bool:
        closed = self.mosaic_epochs is not None and self.epoch >= self.mosaic_epochs
        return self.transform.augment.mosaic > 0 and len(self.reader) > 1 and not closed

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``index``: a position, or ``(epoch, position)`` from ``EpochShuffleSampler(with_epoch=True)``
        (a persistent loader worker learns each epoch from the indices it is sent)."""
        if isinstance(index, tuple):
            self.epoch, index = index
        sample = self.reader[index]
        record = sample.record
        if not isinstance(self.transform, EvalTransform):  # augmenting
            self._reseed()
            mosaic_items = None
            if self._mosaic_now():
                others = self._rng.integers(0, len(self.reader), 3).tolist()
                # the three others are read only when this call's Mosaic draw will use them (at mosaic 0.5,
                # half of the items): the draw is made either way, so the stream stays the same
                mosaic_items = [
                    self.transform.prepare(s.image, s.boxes, s.labels) for s in map(self.reader.__getitem__, others)
                ] if self.transform.mosaic_will_apply() else []  # fmt: skip
            image, boxes, labels = self.transform(sample.image, sample.boxes, sample.labels, mosaic_items)
            params = np.full(4, np.nan, dtype=np.float32)
        else:
            image, boxes, labels, params = self.transform(sample.image, sample.boxes, sample.labels)
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).reshape(-1),
            "image_id": torch.tensor(record.image_id, dtype=torch.int64),
            "orig_size": torch.tensor([record.height, record.width], dtype=torch.int64),
            "letterbox": torch.from_numpy(params),
        }
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), target


class EpochShuffleSampler(DistributedSampler):
    """Random order drawn from ``seed + epoch``, this rank's share of it (every ``num_replicas``-th).

    Lightning calls ``set_epoch`` before each epoch, which also tells the dataset the epoch. A resumed
    run therefore sees the same order as one that never stopped (a plain RandomSampler draws from the
    global RNG, which resuming does not restore). It is a ``DistributedSampler`` so that under DDP
    Lightning keeps it instead of wrapping it in its own (whose ``set_epoch`` would never reach this
    one: every epoch would repeat the first epoch's order and augmentation).

    With ``with_epoch`` it yields ``(epoch, index)``: the epoch travels with each index, so loader workers
    can persist across epochs (a worker forked once never sees ``set_epoch``) and still draw each epoch's
    augmentation, the same as workers forked anew each epoch.
    """

    def __init__(
        self, dataset: DetectionDataset, seed: int = 0, num_replicas: int = 1, rank: int = 0, with_epoch: bool = False
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.dataset = dataset
        self.dataset.rank = rank
        self.with_epoch = with_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        order += order[: self.total_size - len(order)]  # pad as DistributedSampler does: equal shares
        share = order[self.rank : self.total_size : self.num_replicas]
        return iter([(self.epoch, i) for i in share] if self.with_epoch else share)


def collate_detections(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, BatchTargets]:
    """Stack images to ``uint8 [N, 3, S, S]`` (the model normalizes on its device: 4x less to copy)
    and pack the ragged targets (``core.targets.BatchTargets``, which reads as the list of per-image dicts)."""
    images = torch.stack([item[0] for item in batch])
    return images, BatchTargets.from_items([item[1] for item in batch])

