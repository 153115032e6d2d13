"""LightningDataModule: readers + transforms + loaders with ragged targets. No model code."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Literal

import lightning as L
from jsonargparse.typing import NonNegativeInt, OpenUnitInterval, PositiveInt
from torch.utils.data import DataLoader

from gridyolo.core.letterbox import EvalTransform
from gridyolo.data.base import DetectionReader
from gridyolo.data.carve import carve_validation
from gridyolo.data.dataset import DetectionDataset, EpochShuffleSampler, collate_detections
from gridyolo.data.image_scan import FATAL, check_images
from gridyolo.data.readers import build_reader
from gridyolo.data.sample import DatasetInfo
from gridyolo.data.transforms import AugmentConfig, TrainTransform
from gridyolo.errors import DatasetError, GridyoloError


class DetectionDataModule(L.LightningDataModule):
    """Train / val loaders for a COCO, VOC or YOLO-txt dataset.

    Args:
        root: dataset root (VOC: one or several roots; YOLO: the data YAML).
        format: ``coco``, ``voc`` or ``yolo``.
        train_split, val_split: split names (COCO ``train2017``, VOC ``trainval``, YOLO ``train`` ...).
            ``val_split: null`` with ``val_fraction``: validate on a part carved from the training split
            (``data.carve``; the test split then stays unseen until ``gridyolo eval``).
        val_fraction: the share of the training images carved out for validation (``val_split: null``).
        val_root: root of the validation split when it differs (VOC07+12 trains on two roots, tests on VOC07).
        classes: VOC class list (``"voc"`` for the 20 classes, ``None`` to infer from the files).
        input_size: square model input in pixels.
        resize_mode: ``letterbox`` (keep aspect, pad) or ``stretch`` (YOLOv1's plain resize).
        augment: training augmentation (``AugmentConfig``); evaluation never augments.
        batch_size, num_workers: loader settings; ``val_batch_size`` defaults to ``batch_size``.
        persistent_workers: keep the training loader's workers alive across epochs instead of forking
            them anew each epoch (less CPU; the same batches: the epoch travels with each index).
        seed: seed of the shuffle order and the augmentation stream (both also depend on the epoch).
        check_images: decode every image once before training (cached by file size and mtime), so a
            corrupt image or a size that differs from its annotation stops the run before its first step.
    """

    def __init__(
        self,
        root: str | list[str],
        format: Literal["coco", "voc", "yolo"] = "coco",
        train_split: str | None = "train",
        val_split: str | None = "val",
        val_root: str | list[str] | None = None,
        val_fraction: OpenUnitInterval | None = None,
        classes: list[str] | str | None = "voc",
        input_size: PositiveInt = 448,
        resize_mode: Literal["letterbox", "stretch"] = "letterbox",
        augment: AugmentConfig | None = None,
        batch_size: PositiveInt = 16,
        val_batch_size: PositiveInt | None = None,
        num_workers: NonNegativeInt = 2,
        persistent_workers: bool = True,
        seed: int = 0,
        check_images: bool = True,
    ) -> None:
        super().__init__()
        self.root, self.format, self.classes = root, format, classes
        self.train_split, self.val_split = train_split, val_split
        if (val_split is None) == (val_fraction is None):
            raise DatasetError("data: give either val_split or val_fraction (to carve a validation split)")
        self.val_fraction = val_fraction
        self.carved: dict | None = None  # what was carved, for the run directory (val_split.json)
        self.val_root = val_root if val_root is not None else root
        self.input_size, self.resize_mode = input_size, resize_mode
        self.augment = augment or AugmentConfig()
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.persistent_workers = persistent_workers
        self.check_images = check_images
        self.train_reader: DetectionReader | None = None
        self.val_reader: DetectionReader | None = None

    def _read(self, root: str | list[str], split: str | None, role: str) -> DetectionReader:
        reader = build_reader(root, self.format, split, classes=self.classes)
        if len(reader) == 0:
            raise DatasetError(f"{reader.name}: no usable images in the {role} split '{split}'")
        if self.check_images:
            _check_images(reader, role)
        return reader

    def prepare_readers(self) -> None:
        """Parse annotations once (cheap; images load lazily). Called by ``setup`` and by the CLI to
        read the class list before the model is built."""
        if self.train_reader is None:
            self.train_reader = self._read(self.root, self.train_split, "training")
            if self.val_fraction is not None:
                self.train_reader, self.val_reader, self.carved = carve_validation(
                    self.train_reader, self.val_fraction, self.seed
                )
        if self.val_reader is None:
            self.val_reader = self._read(self.val_root, self.val_split, "validation")
            if self.val_reader.info.class_names != self.train_reader.info.class_names:
                raise DatasetError(
                    f"{self.val_reader.name}: its classes differ from the training split's "
                    f"({len(self.val_reader.info.class_names)} vs {len(self.train_reader.info.class_names)})"
                )

    @property
    def info(self) -> DatasetInfo:
        self.prepare_readers()
        return self.train_reader.info

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def category_ids(self) -> list[int]:
        return list(self.info.category_ids)

    def settings(self) -> dict:
        """What this data module reads and how (``training.resume`` compares it on ``--resume``), in
        built-in types only (checkpoints load with ``weights_only=True``)."""
        return _builtin({
            "root": self.root, "format": self.format, "train_split": self.train_split, "val_split": self.val_split,
            "val_root": self.val_root, "val_fraction": self.val_fraction, "classes": self.classes,
            "input_size": self.input_size, "resize_mode": self.resize_mode, "augment": asdict(self.augment),
            "batch_size": self.batch_size, "val_batch_size": self.val_batch_size, "num_workers": self.num_workers,
            "seed": self.seed, "check_images": self.check_images,
        })  # fmt: skip

    def state_dict(self) -> dict:
        """Saved in every checkpoint (Lightning), so a resumed run can be checked against it."""
        return {"settings": self.settings()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to restore: the settings were compared before the resumed run started."""

    def setup(self, stage: str | None = None) -> None:
        self.prepare_readers()

    def train_dataloader(self) -> DataLoader:
        transform = TrainTransform(self.input_size, self.resize_mode, self.augment, seed=self.seed)
        trainer = self.trainer
        first_epochs = None
        if self.augment.close_mosaic > 0 and self.augment.mosaic > 0:  # the same condition as the CLI's check
            first_epochs = mosaic_epochs(self.augment.close_mosaic, trainer.max_epochs if trainer is not None else None)
        dataset = DetectionDataset(self.train_reader, transform, seed=self.seed, mosaic_epochs=first_epochs)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(dataset, self.seed, num_replicas=world, rank=rank, with_epoch=True),
            drop_last=len(self.train_reader) > self.batch_size,  # BatchNorm dislikes a batch of 1
            num_workers=self.num_workers,
            collate_fn=collate_detections,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=self._on_gpu(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            DetectionDataset(self.val_reader, EvalTransform(self.input_size, self.resize_mode)),
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_detections,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._on_gpu(),
        )

    def _on_gpu(self) -> bool:
        """Batches in page-locked memory when training on CUDA: the copy to the GPU is then asynchronous."""
        root = getattr(self.trainer, "strategy", None) if self.trainer is not None else None
        device = getattr(root, "root_device", None)
        return device is not None and getattr(device, "type", None) == "cuda"


def mosaic_epochs(close_mosaic: int, max_epochs: int | None) -> int:
    """How many first epochs use Mosaic when ``augment.close_mosaic`` switches it off for the last ones
    (none when the run is that short: ``--trainer.max_epochs 3`` on a config closing 10)."""
    if max_epochs is None or max_epochs < 0:
        raise GridyoloError(f"augment.close_mosaic {close_mosaic}: needs --trainer.max_epochs (it counts back from it)")
    return max(max_epochs - close_mosaic, 0)


def _builtin(value):
    """``value`` with jsonargparse's restricted numbers (``PositiveInt``...) as plain ints and floats."""
    if isinstance(value, dict):
        return {str(k): _builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_builtin(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def _check_images(reader: DetectionReader, role: str) -> None:
    """Stop on images that would stop training later, or silently feed it a grey tail."""
    problems = check_images(reader.records, reader.name, progress=len(reader) >= 2000)
    suspect = [p for p in problems if p.kind not in FATAL]
    if suspect:
        print(f"gridyolo: warning: {len(suspect)} suspect image(s) in the {role} split of {reader.name} (e.g. "
              f"{suspect[0].file}: {suspect[0].detail}); gridyolo data check lists them", file=sys.stderr)  # fmt: skip
    fatal = [p for p in problems if p.kind in FATAL]
    if fatal:
        first = "; ".join(f"{p.file}: {p.kind}: {p.detail}" for p in fatal[:3])
        raise DatasetError(
            f"{len(fatal)} bad image(s) in the {role} split of {reader.name}: {first}"
            f"{' ...' if len(fatal) > 3 else ''} (gridyolo data check lists them all)"
        )
