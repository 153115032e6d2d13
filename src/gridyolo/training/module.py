"""The LightningModule: model + loss + decode + metrics. No data code (that is the DataModule's)."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    OpenUnitInterval,
    PositiveFloat,
    PositiveInt,
)
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim.swa_utils import AveragedModel

from gridyolo.core.decode import decode_targets_batch
from gridyolo.core.loss import Assign, BoxLoss, ClassLoss, ConfLoss, YoloV1Loss
from gridyolo.core.targets import BatchTargets
from gridyolo.errors import GridyoloError
from gridyolo.evaluation import coco_ground_truth
from gridyolo.evaluation.scoring import coco_scores
from gridyolo.input_guards import check_input_size
from gridyolo.models import backbone_stride, build_detector, stem_layers
from gridyolo.models.checkpoint import ModelMeta
from gridyolo.training.ema import EmaUpdater, ema_multi_avg_fn
from gridyolo.training.finite_check import FiniteLossCheck, NonFiniteLossError  # noqa: F401 (its home before)
from gridyolo.training.optim import build_optimizer, lr_lambda


class GridYoloModule(L.LightningModule):
    """Train / validate a gridyolo Detector.

    Args:
        backbone, weights, grid_size, num_boxes, head_channels: the model (see ``build_detector``).
        head: ``pool`` (YOLOv1's: features averaged to S×S), ``space_to_depth`` (each position of a cell
            keeps its features) or ``space_to_depth_s8`` (also from the stride-8 map); see ``models.head``.
        class_names, category_ids: linked from the data; travel inside checkpoints.
        input_size, resize_mode: linked from the data; travel inside checkpoints.
        lambda_coord, lambda_noobj: YOLOv1 loss weights.
        box_loss, conf_loss, class_loss: the loss's parts (``core.loss.YoloV1Loss``): ``sse`` for all three
            is YOLOv1's loss; ``giou`` / ``diou`` / ``ciou`` (or ``sse+ciou``... beside the squared error)
            for boxes, ``bce`` (IoU-aware) for confidences, ``ce`` for classes.
        assign, ignore_iou: which predictors learn an object: ``responsible`` (YOLOv1: the best of its
            cell's B) or ``all_predictors``; ``ignore_iou``: non-positive boxes overlapping an object by
            more than this are not pushed to confidence 0 (YOLOv2's rule; ``None``: YOLOv1).
        optimizer: ``sgd`` (momentum, Nesterov) or ``adamw``; ``lr`` is the head's base LR.
        momentum, weight_decay: weight decay is not applied to norm weights and biases.
        backbone_lr_factor: LR multiplier of the (pre-trained) backbone.
        freeze_backbone_epochs: the backbone is not updated during the first N epochs.
        freeze_stem: keep the backbone's layers up to ``freeze_stride`` frozen (weights and BatchNorm
            statistics) for the whole run; for pre-trained backbones.
        freeze_stride: where the frozen stem ends: 4 (Detectron2's ``FREEZE_AT=2``) or 8 (``FREEZE_AT=3``:
            no backward pass through the stride-8 stage either; cheaper CPU steps).
        channels_last: NHWC memory format for model and batches (about 1.8× faster training on CPU
            for EfficientNet-Lite0; see BENCHMARKS.md).
        schedule, warmup_epochs, min_lr_factor, milestones, gamma: see ``optim.lr_lambda``.
        ema_decay: EMA of the weights used for validation and saved in checkpoints (``None``: off).
        ema_warmup_steps: the EMA decay ramps up as ``ema_decay * (1 - exp(-step / ema_warmup_steps))``;
            short runs need a short ramp or the EMA never averages.
        conf_threshold, iou_threshold, max_detections: decoding during validation.
        eval_backend: ``auto``, ``pycocotools`` or ``faster_coco_eval``.
    """

    progress_refresh_s = 0.5  # the progress bar reads the loss values at most this often

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        grid_size: PositiveInt = 7,
        num_boxes: PositiveInt = 2,
        head_channels: PositiveInt = 256,
        head: Literal["pool", "space_to_depth", "space_to_depth_s8"] = "pool",
        class_names: list[str] | None = None,
        category_ids: list[int] | None = None,
        input_size: PositiveInt = 448,
        resize_mode: Literal["letterbox", "stretch"] = "letterbox",
        lambda_coord: NonNegativeFloat = 5.0,
        lambda_noobj: NonNegativeFloat = 0.5,
        box_loss: BoxLoss = "sse",
        conf_loss: ConfLoss = "sse",
        class_loss: ClassLoss = "sse",
        assign: Assign = "responsible",
        ignore_iou: ClosedUnitInterval | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: PositiveFloat = 0.01,
        momentum: ClosedUnitInterval = 0.9,
        weight_decay: NonNegativeFloat = 5e-4,
        backbone_lr_factor: NonNegativeFloat = 1.0,
        freeze_backbone_epochs: NonNegativeInt = 0,
        freeze_stem: bool = False,
        freeze_stride: Literal[4, 8] = 4,
        channels_last: bool = False,
        schedule: Literal["cosine", "multistep"] = "cosine",
        warmup_epochs: NonNegativeFloat = 1.0,
        min_lr_factor: ClosedUnitInterval = 0.05,
        milestones: list[OpenUnitInterval] | None = None,
        gamma: PositiveFloat = 0.1,
        ema_decay: OpenUnitInterval | None = 0.999,
        ema_warmup_steps: PositiveFloat = 2000.0,
        conf_threshold: ClosedUnitInterval = 0.001,
        iou_threshold: ClosedUnitInterval = 0.5,
        max_detections: PositiveInt = 100,
        eval_backend: Literal["auto", "pycocotools", "faster_coco_eval"] = "auto",
    ) -> None:
        super().__init__()
        if not class_names:
            raise GridyoloError("the model needs class_names (they come from the data)")
        check_input_size(input_size, backbone_stride(backbone), "model.input_size")
        self.save_hyperparameters()
        num_classes = len(class_names)
        # kept here, not only in hparams: LightningCLI < 2.5 saves hparams from the config, without the
        # values linked from the data at instantiation (class names and ids)
        self.class_names = list(class_names)
        self.category_ids = list(category_ids) if category_ids else list(range(1, num_classes + 1))
        self.model = build_detector(backbone, num_classes, grid_size, num_boxes, weights, head_channels, head,
                                    input_size)  # fmt: skip
        self.backbone_frozen = False  # during the first freeze_backbone_epochs epochs
        self.schedule_steps: tuple[int, int] | None = None  # (total, per epoch) of the LR schedule
        self.frozen_stem = stem_layers(self.model.backbone, freeze_stride) if freeze_stem else []
        for layer in self.frozen_stem:
            layer.requires_grad_(False)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = YoloV1Loss(grid_size, num_boxes, num_classes, lambda_coord, lambda_noobj, box_loss, conf_loss,
                                  class_loss, assign, ignore_iou)  # fmt: skip
        self.ema: AveragedModel | None = None
        if ema_decay:
            self.ema = AveragedModel(
                self.model, multi_avg_fn=ema_multi_avg_fn(ema_decay, ema_warmup_steps), use_buffers=True
            )
            self.ema.requires_grad_(False)
        self.ema_updater = EmaUpdater(ema_decay, ema_warmup_steps) if ema_decay else None
        self.finite_check = FiniteLossCheck()
        self.latest_losses: dict[str, Tensor] = {}  # the last training step's terms, on its device
        self._predictions: dict[int, dict[str, Tensor]] = {}
        self._ground_truth: dict | None = None
        self.last_metrics: dict[str, Any] = {}
        self.last_metrics_epoch: int | None = None  # the epoch whose validation last_metrics hold

    # -- what checkpoints carry -------------------------------------------------------------------
    @property
    def meta(self) -> ModelMeta:
        hp = self.hparams
        return ModelMeta(
            backbone=hp.backbone, grid_size=hp.grid_size, num_boxes=hp.num_boxes, head_channels=hp.head_channels,
            class_names=self.class_names, category_ids=self.category_ids, input_size=hp.input_size,
            resize_mode=hp.resize_mode, mean=self.model.mean.flatten().tolist(), std=self.model.std.flatten().tolist(),
            conf_threshold=self.last_metrics.get("f1_threshold"), head=hp.head,
        )  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_check.raise_pending()  # never a checkpoint of a step that a GPU's loss check let through
        checkpoint["gridyolo"] = self.meta.to_dict()
        if self.schedule_steps is not None:
            checkpoint["gridyolo_schedule"] = {"total_steps": self.schedule_steps[0],
                                               "steps_per_epoch": self.schedule_steps[1]}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        schedule = checkpoint.get("gridyolo_schedule")
        if isinstance(schedule, dict):  # runs before configure_optimizers: the resumed LR curve is the same
            self.schedule_steps = (int(schedule["total_steps"]), int(schedule["steps_per_epoch"]))
        saved = checkpoint.get("gridyolo", {}).get("class_names")
        if saved is not None and list(saved) != self.class_names:
            raise GridyoloError(
                f"the checkpoint has {len(saved)} classes ({', '.join(saved[:5])}...) but the data has "
                f"{len(self.class_names)}: resume or evaluate with the data it was trained on"
            )

    # -- training -----------------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def _layout(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def on_train_epoch_start(self) -> None:
        self.backbone_frozen = self.current_epoch < self.hparams.freeze_backbone_epochs
        if self.trainer.world_size == 1:  # DDP needs the same parameters to require grad on every step
            self.model.backbone.requires_grad_(not self.backbone_frozen)
        for layer in self.frozen_stem:
            layer.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> GridYoloModule:
        """Lightning switches to train mode after every validation; frozen parts keep their BatchNorm
        statistics: the stem always (``freeze_stem``), the backbone while ``freeze_backbone_epochs`` last."""
        super().train(mode)
        if mode and hasattr(self, "frozen_stem"):  # nn.Module may call train() before __init__ is done
            for layer in self.model.backbone.modules() if self.backbone_frozen else self.frozen_stem:
                layer.eval()
        return self

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.backbone_frozen:  # no gradient, so no step, no weight decay, no momentum or Adam state
            for param in self.model.backbone.parameters():
                param.grad = None

    def training_step(self, batch: tuple[Tensor, BatchTargets | list[dict[str, Tensor]]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.loss_fn(self.model(self._layout(images)), targets, tuple(images.shape[-2:]))
        self.finite_check.check(losses, self.current_epoch, self.global_step)
        # the epoch mean over all batches (and ranks): what the run history and metrics.csv record
        self.log("train/loss", losses["total"], on_step=False, on_epoch=True, batch_size=len(images), sync_dist=True)
        # Lightning turns every progress-bar value into a Python number after every later batch of the epoch
        # too (a device read each on a GPU), and a float logged on a GPU is a blocking copy: the step's terms
        # go to the loggers on the steps they write, and to the progress bar through ``progress_values``
        self.latest_losses = {k: v.detach() for k, v in losses.items()}
        if self._loggers_write_this_step():
            self.log_dict({k: v for k, v in losses.items() if k != "total"}, batch_size=len(images))
            self.log("loss", losses["total"], batch_size=len(images))
            self.log("lr", self.trainer.optimizers[0].param_groups[-1]["lr"], batch_size=len(images))
        return losses["total"]

    def _loggers_write_this_step(self) -> bool:
        """Lightning's rule for the loggers: the first step and every ``log_every_n_steps``-th."""
        every = getattr(self.trainer, "log_every_n_steps", 1) or 1
        return self.global_step == 0 or (self.global_step + 1) % every == 0

    def progress_values(self) -> dict[str, float]:
        """The last step's loss terms and the learning rate as numbers, for the progress bar (one device
        read per call; ``training.cli.ProgressBar`` calls it at most every ``progress_refresh_s``)."""
        values = {("loss" if k == "total" else k): float(v) for k, v in self.latest_losses.items()}
        if self.latest_losses and self.trainer is not None and self.trainer.optimizers:
            values["lr"] = float(self.trainer.optimizers[0].param_groups[-1]["lr"])
        return values

    def on_train_epoch_end(self) -> None:
        self.finite_check.raise_pending()

    def on_validation_epoch_start(self) -> None:
        self.finite_check.raise_pending()
        self._predictions = {}

    # -- the EMA ------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self.ema_updater is not None:
            self.ema_updater.reset()  # weights may have been restored or moved since

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema_updater.update(self.ema, self.model)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(
            self.model, hp.optimizer, hp.lr, hp.momentum, hp.weight_decay, hp.backbone_lr_factor
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        if self.schedule_steps is not None:  # resumed: the LR goes on where it left off, on the same curve
            if self.schedule_steps[0] != total:
                rank_zero_warn(
                    f"resumed: the learning-rate schedule of the first run is kept ({self.schedule_steps[0]} steps; "
                    f"this run is {total}); steps past its end stay at the schedule's floor"
                )
            total, per_epoch = self.schedule_steps
        self.schedule_steps = (total, per_epoch)
        lambdas = [
            lr_lambda(hp.schedule, total, int(hp.warmup_epochs * per_epoch), hp.min_lr_factor,
                      tuple(hp.milestones or (0.6, 0.85)), hp.gamma, hp.freeze_backbone_epochs * per_epoch,
                      group["is_backbone"])
            for group in optimizer.param_groups
        ]  # fmt: skip
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- validation ---------------------------------------------------------------------------------
    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def decode(self, raw: Tensor, targets: list[dict[str, Tensor]], input_hw: tuple[int, int]) -> list[dict]:
        hp = self.hparams
        return decode_targets_batch(
            raw, hp.num_boxes, input_hw, targets, hp.conf_threshold, hp.iou_threshold, hp.max_detections
        )

    def validation_step(self, batch: tuple[Tensor, BatchTargets | list[dict[str, Tensor]]], batch_idx: int) -> None:
        images, targets = batch
        raw = self.eval_model(self._layout(images))
        losses = self.loss_fn(raw, targets, tuple(images.shape[-2:]))
        self.log("val/loss", losses["total"], batch_size=len(images), sync_dist=True)
        for target, det in zip(targets, self.decode(raw, targets, tuple(images.shape[-2:]))):
            self._predictions[int(target["image_id"])] = {k: v.cpu() for k, v in det.items()}

    def on_validation_epoch_end(self) -> None:
        predictions = self._predictions
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, predictions)
            predictions = {k: v for part in gathered for k, v in part.items()}  # padded duplicates collapse by id
        metrics = self.evaluate_predictions(predictions) if self.global_rank == 0 else None
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        self.last_metrics = metrics
        self.last_metrics_epoch = self.current_epoch
        self.log_dict({f"val/{k}": float(v) for k, v in metrics.items() if isinstance(v, float)}, sync_dist=False)
        self.log("map50", float(metrics["map50"]), prog_bar=True)

    def evaluate_predictions(self, predictions: dict[int, dict[str, Tensor]]) -> dict[str, Any]:
        """COCO metrics of ``{image_id: detections}`` against the validation reader's ground truth."""
        reader = self.trainer.datamodule.val_reader
        if self._ground_truth is None:
            self._ground_truth = coco_ground_truth(reader)
        metrics = coco_scores(reader, predictions, backend=self.hparams.eval_backend, ground_truth=self._ground_truth)
        metrics["images"] = len(predictions)
        return metrics
