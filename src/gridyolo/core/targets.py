"""A batch's ragged targets, packed: one tensor per field instead of five small tensors per image.

A loader worker hands each tensor of a batch to the main process through its own shared-memory segment,
and each one is its own host-to-device copy: with a list of per-image dicts a batch of 64 is 320 of
them (about 70 ms of the main process's time per batch of 64 on a 2-core CPU, BENCHMARKS.md, "GPU");
packed it is six. ``BatchTargets`` still reads as the list of per-image dicts it replaces
(``targets[i]["boxes"]``, ``len``, iteration), each entry made of views into the packed tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

import torch
from torch import Tensor

FIELDS = ("boxes", "labels", "image_index", "image_id", "orig_size", "letterbox")


class BatchTargets(Sequence):
    """Targets of ``N`` images with ``M`` boxes in all.

    Attributes:
        boxes: float32 ``[M, 4]`` xyxy in model-input pixels, image by image in batch order.
        labels: int64 ``[M]``.
        image_index: int64 ``[M]``: the position in the batch of each box's image.
        image_id: int64 ``[N]``; orig_size: int64 ``[N, 2]`` (height, width); letterbox: float32 ``[N, 4]``
            ``(scale_x, scale_y, pad_x, pad_y)``, NaN for augmented items.
        counts: boxes per image, host-side ints: slicing an image's boxes never waits for a device.
    """

    def __init__(self, boxes: Tensor, labels: Tensor, image_index: Tensor, image_id: Tensor, orig_size: Tensor,
                 letterbox: Tensor, counts: tuple[int, ...]) -> None:  # fmt: skip
        self.boxes, self.labels, self.image_index = boxes, labels, image_index
        self.image_id, self.orig_size, self.letterbox = image_id, orig_size, letterbox
        self.counts = tuple(int(c) for c in counts)
        self._ends = tuple(accumulate(self.counts))

    @classmethod
    def from_items(cls, items: Sequence[dict[str, Tensor]]) -> BatchTargets:
        """Pack the per-image dicts of a batch (at least one; ``DetectionDataset``'s ``boxes``, ``labels``,
        ``image_id``, ``orig_size``, ``letterbox``)."""
        counts = tuple(len(t["labels"]) for t in items)
        return cls(
            boxes=torch.cat([t["boxes"].reshape(-1, 4) for t in items]),
            labels=torch.cat([t["labels"].reshape(-1) for t in items]),
            image_index=torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts, dtype=torch.int64)),
            image_id=torch.stack([t["image_id"] for t in items]),
            orig_size=torch.stack([t["orig_size"] for t in items]),
            letterbox=torch.stack([t["letterbox"] for t in items]),
            counts=counts,
        )

    def _map(self, fn) -> BatchTargets:
        return BatchTargets(*(fn(getattr(self, name)) for name in FIELDS), counts=self.counts)

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> BatchTargets:
        """Every tensor on ``device`` (non-blocking to a GPU: pinned batches copy asynchronously)."""
        device = torch.device(device)
        asynchronous = device.type == "cuda" if non_blocking is None else non_blocking
        return self._map(lambda t: t.to(device, non_blocking=asynchronous))

    def pin_memory(self, device: str | None = None) -> BatchTargets:
        """What the DataLoader's ``pin_memory`` calls on a batch element."""
        return self._map(lambda t: t.pin_memory() if device is None else t.pin_memory(device))

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, index: int) -> dict[str, Tensor]:  # type: ignore[override]
        """Image ``index``'s target as ``DetectionDataset`` returned it (views, not copies)."""
        if not isinstance(index, int):
            raise TypeError(f"BatchTargets indices are ints, not {type(index).__name__}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"image {index} of a batch of {len(self)}")
        end = self._ends[index]
        start = end - self.counts[index]
        return {"boxes": self.boxes[start:end], "labels": self.labels[start:end], "image_id": self.image_id[index],
                "orig_size": self.orig_size[index], "letterbox": self.letterbox[index]}  # fmt: skip

    def __repr__(self) -> str:
        return f"BatchTargets({len(self)} images, {len(self.labels)} boxes, on {self.boxes.device})"
