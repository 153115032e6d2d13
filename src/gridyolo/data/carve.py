"""A validation split carved from the training split, for datasets that have none.

Choosing ``best.ckpt`` or any setting on the test split makes the test number optimistic; a dataset
with only train and test splits gets a validation split carved from its training images instead:
seeded, stratified by class (each image counts for its rarest class, so rare classes reach the
validation split too), the same on every run and machine for the same files and seed.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from gridyolo.data.base import DetectionReader
from gridyolo.errors import DatasetError


class SubsetReader(DetectionReader):
    """Some records of another reader (same classes, files and image ids)."""

    def __init__(self, parent: DetectionReader, indices: list[int], name: str) -> None:
        self.parent = parent
        self.records = [parent.records[i] for i in indices]
        self.info = parent.info
        self.issues, self.notes = [], []
        self.name = name


def stratum(labels: np.ndarray, frequency: Counter) -> int:
    """The rarest class of an image's objects (-1: no objects), ties by the smaller label."""
    if not len(labels):
        return -1
    return int(min(set(labels.tolist()), key=lambda c: (frequency[c], c)))


def carve_validation(
    reader: DetectionReader, fraction: float, seed: int = 0
) -> tuple[SubsetReader, SubsetReader, dict]:
    """Split ``reader`` into ``(train, val, record)``: about ``fraction`` of the images in each stratum
    (``stratum``) go to ``val``, drawn by ``seed``. ``record`` lists the validation images (the run
    keeps it as ``val_split.json``)."""
    if not 0 < fraction < 1:
        raise DatasetError(f"val_fraction {fraction}: must be between 0 and 1")
    if len(reader) < 2:
        raise DatasetError(f"{reader.name}: {len(reader)} image(s) cannot be split into training and validation")
    frequency = Counter(int(label) for record in reader.records for label in record.labels)
    groups: dict[int, list[int]] = {}
    for index, record in enumerate(reader.records):
        groups.setdefault(stratum(record.labels, frequency), []).append(index)
    rng = np.random.default_rng(seed)
    wanted = max(1, round(fraction * len(reader)))
    val: list[int] = []
    for key in sorted(groups):  # a fixed order: the draw depends on the files and the seed only
        members = groups[key]
        take = round(fraction * len(members))
        val += rng.permutation(members)[:take].tolist()
    chosen = set(val)
    leftover = [i for i in rng.permutation(len(reader)).tolist() if i not in chosen]
    val = (val + leftover[: max(0, wanted - len(val))])[:wanted]  # rounding per stratum: fix the total
    val_set = set(val)
    if len(val_set) == len(reader):
        val_set.discard(val[-1])
    train = [i for i in range(len(reader)) if i not in val_set]
    val = sorted(val_set)
    names = reader.info.class_names
    counts = {split: Counter(names[int(lab)] for i in ids for lab in reader.records[i].labels)
              for split, ids in (("train", train), ("val", val))}  # fmt: skip
    record = {
        "carved_from": reader.name, "fraction": fraction, "seed": seed, "train_images": len(train),
        "val_images": len(val), "objects_per_class": counts,
        "val_files": [os.path.relpath(reader.records[i].file) for i in val],
    }  # fmt: skip
    return (SubsetReader(reader, train, f"{reader.name} (training part)"),
            SubsetReader(reader, val, f"{reader.name} (carved validation)"), record)  # fmt: skip
