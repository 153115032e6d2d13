"""The bar to beat: torchvision's FCOS on the same EfficientNet-Lite0 ImageNet backbone, trained and
scored under gridyolo's protocol. Not part of the package (a comparator lives in ``benchmarks/``).

Same as a gridyolo run of the config it is given: the data module (readers, carved validation split,
albumentations augmentation, letterbox / stretch, uint8 batches), optimizer, LR, warm-up + cosine
schedule, EMA, gradient clipping, epochs and wall-clock budget, the validation metric that picks the
best weights (``val/map`` of the EMA model, gridyolo's ``evaluate_coco``), and the test split scored
once with the same function. Different: the model. Lite0's stride-8 / 16 / 32 maps (40 / 112 / 320
channels, before its 1280-channel head conv) feed a 64-channel FPN and FCOS's shared head (focal loss,
GIoU boxes, centerness); anchors of 8 / 16 / 32 px set its per-level size ranges.

    python benchmarks/fcos_comparator.py --config configs/bccd_lite0.yaml --out runs/bench/fcos --minutes 20
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import resource
import time
from collections import OrderedDict
from pathlib import Path

import lightning as L
import torch
import yaml
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork

from gridyolo.data.datamodule import DetectionDataModule
from gridyolo.data.transforms import AugmentConfig
from gridyolo.evaluation import coco_ground_truth, coco_results, evaluate_coco
from gridyolo.models.backbones import LITE0_STRIDE8_BLOCKS, LITE0_STRIDE16_BLOCKS, LiteFeatures, stem_layers
from gridyolo.training.module import _ema_update
from gridyolo.training.optim import build_optimizer, lr_lambda

TAPS = (LITE0_STRIDE8_BLOCKS - 1, LITE0_STRIDE16_BLOCKS - 1, 15)  # blocks ending at stride 8, 16, 32


class LiteFPN(nn.Module):
    """Lite0 (ImageNet weights) stride-8 / 16 / 32 maps -> FPN of ``channels``: what FCOS calls a backbone."""

    def __init__(self, channels: int = 64, weights: str | None = "imagenet") -> None:
        super().__init__()
        self.lite = LiteFeatures(weights, 32)
        self.fpn = FeaturePyramidNetwork([40, 112, 320], channels)
        self.out_channels = channels

    def forward(self, x: Tensor) -> OrderedDict:
        net = self.lite.net
        x = net.act(net._bn0(net._conv_stem(x)))
        maps = OrderedDict()
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in TAPS:
                maps[str(len(maps))] = x
        return self.fpn(maps)


def build_fcos(num_classes: int, input_size: int, weights: str | None = "imagenet") -> FCOS:
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
    # min = max = the input size: the batches come letterboxed to it, so FCOS's own transform only normalizes;
    # score 0.001 / NMS 0.5 / 100 per image: gridyolo's validation settings
    return FCOS(LiteFPN(64, weights), num_classes, min_size=input_size, max_size=input_size,
                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], anchor_generator=anchors,
                score_thresh=0.001, nms_thresh=0.5, detections_per_img=100)  # fmt: skip


def to_original(det: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detections in input pixels -> the original image (inverse letterbox, clipped), as gridyolo's decode."""
    sx, sy, px, py = target["letterbox"].tolist()
    boxes = (det["boxes"] - torch.tensor([px, py, px, py])) / torch.tensor([sx, sy, sx, sy])
    height, width = target["orig_size"].tolist()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return {"boxes": boxes, "scores": det["scores"], "labels": det["labels"]}


class FcosModule(L.LightningModule):
    def __init__(self, num_classes: int, input_size: int, model_args: dict) -> None:
        super().__init__()
        self.args = model_args
        self.model = build_fcos(num_classes, input_size)
        self.frozen = stem_layers(self.model.backbone.lite) if model_args.get("freeze_stem") else []
        for layer in self.frozen:
            layer.requires_grad_(False)
        decay = model_args.get("ema_decay", 0.999)
        self.ema = AveragedModel(self.model, multi_avg_fn=_ema_update(decay, model_args.get("ema_warmup_steps", 2000)),
                                 use_buffers=True)  # fmt: skip
        self.ema.requires_grad_(False)
        self.predictions: dict[int, dict] = {}
        self.best: tuple[float, int, dict] | None = None  # (val mAP, epoch, EMA state)
        self.history: list[dict] = []

    def train(self, mode: bool = True) -> FcosModule:
        super().train(mode)
        for layer in getattr(self, "frozen", []):
            layer.eval()  # the frozen stem keeps ImageNet's BatchNorm statistics, as gridyolo's freeze_stem
        return self

    @staticmethod
    def _inputs(images: Tensor, targets: list[dict]) -> tuple[list[Tensor], list[dict]]:
        inputs = [im.float() / 255 for im in images]
        return inputs, [{"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long()} for t in targets]

    def training_step(self, batch, batch_idx):
        images, targets = self._inputs(*batch)
        losses = self.model(images, targets)
        total = sum(losses.values())
        self.log("loss", total, prog_bar=True, batch_size=len(images))
        return total

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.update_parameters(self.model)

    def configure_optimizers(self):
        a = self.args
        optimizer = build_optimizer(self.model, a.get("optimizer", "adamw"), a.get("lr", 0.002), a.get("momentum", 0.9),
                                    a.get("weight_decay", 5e-4), a.get("backbone_lr_factor", 1.0))  # fmt: skip
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        warmup = int(a.get("warmup_epochs", 1.0) * per_epoch)
        lambdas = [lr_lambda(a.get("schedule", "cosine"), total, warmup) for _ in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_validation_epoch_start(self) -> None:
        self.predictions = {}

    def validation_step(self, batch, batch_idx) -> None:
        images, targets = batch
        inputs, _ = self._inputs(images, targets)
        for target, det in zip(targets, self.ema.module.eval()(inputs)):
            self.predictions[int(target["image_id"])] = to_original({k: v.cpu() for k, v in det.items()}, target)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics = score(self.trainer.datamodule.val_reader, self.predictions)
        self.log("val/map", metrics["map"])
        self.history.append({"epoch": self.current_epoch, "minutes": round((time.time() - self.start) / 60, 2),
                             **{k: round(metrics[k], 4) for k in ("map", "map50", "map75")}})  # fmt: skip
        if self.best is None or metrics["map"] > self.best[0]:
            self.best = (metrics["map"], self.current_epoch, copy.deepcopy(self.ema.module.state_dict()))

    def on_train_start(self) -> None:
        self.start = time.time()


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (loader workers), as gridyolo runs are counted."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def score(reader, predictions: dict[int, dict]) -> dict:
    return evaluate_coco(coco_ground_truth(reader), coco_results(predictions, reader.info.category_ids))


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``section.key=value`` (value read as YAML) into the config, e.g. ``data.input_size=320``: a run
    named for an input size keeps measuring it after the config's own value moves."""
    for item in overrides:
        path, sep, value = item.partition("=")
        keys = path.split(".")
        if not sep or not all(keys):
            raise SystemExit(f"--set {item!r}: expected section.key=value")
        node = config
        for key in keys[:-1]:
            if node.get(key) is None:  # absent, or ``augment:`` left empty
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise SystemExit(f"--set {item!r}: {key} is not a section")
        node[keys[-1]] = yaml.safe_load(value)
    return config


def run(
    config_path: str, out: Path, minutes: float, seed: int, data_root: str | None, test_split: str,
    max_epochs: int | None = None, overrides: list[str] | None = None,
) -> dict:
    config = apply_overrides(yaml.safe_load(Path(config_path).read_text()), overrides or [])
    data, model_args = dict(config["data"]), dict(config["model"])
    if data_root:
        data["root"] = data_root
    data["seed"] = seed
    L.seed_everything(seed, workers=True)
    augment = data.pop("augment", None)
    dm = DetectionDataModule(**data, augment=AugmentConfig(**augment) if augment else None)
    dm.setup()
    module = FcosModule(len(dm.class_names), data["input_size"], model_args)
    epochs = max_epochs or config["trainer"]["max_epochs"]
    budget = f"00:00:{int(minutes):02d}:{int(minutes % 1 * 60):02d}"
    trainer = L.Trainer(max_epochs=epochs, max_time=budget, accelerator="cpu", gradient_clip_val=10.0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        num_sanity_val_steps=0)  # fmt: skip
    start, cpu_start = time.time(), cpu_seconds()
    trainer.fit(module, datamodule=dm)
    seconds, cpu = time.time() - start, cpu_seconds() - cpu_start
    best_map, best_epoch, state = module.best
    module.ema.module.load_state_dict(state)
    test = DetectionDataModule(**{**data, "val_split": test_split, "val_fraction": None}, augment=None)
    test.setup()
    model = module.ema.module.eval()
    predictions: dict[int, dict] = {}
    with torch.no_grad():
        for images, targets in test.val_dataloader():
            inputs, _ = FcosModule._inputs(images, targets)
            for target, det in zip(targets, model(inputs)):
                predictions[int(target["image_id"])] = to_original(det, target)
    metrics = score(test.val_reader, predictions)
    row = {k: metrics[k] for k in ("map", "map50", "map75", "per_class") if k in metrics}
    row.update(val={k: v for k, v in module.history[best_epoch].items() if k != "epoch"} if module.history else {},
               minutes=round(seconds / 60, 1), cpu_seconds=round(cpu), epochs=trainer.current_epoch,
               best_epoch=best_epoch, history=module.history,
               train_images=len(dm.train_reader), config=config_path, overrides=overrides or [],
               seed=seed)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--max-epochs", type=int, help="the config's by default; fewer so that the schedule fits")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (YAML), e.g. data.input_size=416; repeatable")
    args = parser.parse_args()
    row = run(args.config, Path(args.out), args.minutes, args.seed, args.data_root, args.test_split, args.max_epochs,
              args.set)
    print(json.dumps({k: v for k, v in row.items() if k not in ("history", "per_class")}))
    if not math.isfinite(row["map"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
