"""Training off the happy path: interrupted runs, precision, DDP sampling, frozen backbones, the
responsible-predictor fallback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from gridyolo.core.loss import YoloV1Loss
from gridyolo.data.datamodule import DetectionDataModule
from gridyolo.data.dataset import DetectionDataset, EpochShuffleSampler
from gridyolo.data.readers import build_reader
from gridyolo.data.transforms import AugmentConfig, TrainTransform
from gridyolo.models.checkpoint import load_checkpoint
from gridyolo.training.callbacks import RunStatus
from gridyolo.training.cli import default_precision
from gridyolo.training.module import GridYoloModule
from train_helpers import tiny_bccd, tiny_config

CLASSES = ["RBC", "WBC", "Platelets"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tiny_bccd(tmp_path_factory.mktemp("bccd"), count=8)


def _start_training(tmp_path, config, name):
    command = [sys.executable, "-m", "gridyolo", "train", "--config", str(config), "--project",
               str(tmp_path / "runs"), "--name", name]  # fmt: skip
    # a shell runs background jobs (and so pytest, and this child) with SIGINT ignored; Ctrl-C is what we test
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def _interrupt_after_first_checkpoint(process, last, sig) -> tuple[int, str]:
    deadline = time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert last.exists(), process.communicate()[1][-2000:]
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.mark.parametrize(("sig", "code", "reason"), [(signal.SIGINT, 130, "KeyboardInterrupt"),
                                                      (signal.SIGTERM, 143, "SIGTERM")])  # fmt: skip
def test_an_interrupted_run_is_marked_and_resumes(tiny_root, tmp_path, sig, code, reason):
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root, trainer__max_epochs=200)
    run = tmp_path / "runs" / "stopped"
    last = run / "weights" / "last.ckpt"
    returncode, err = _interrupt_after_first_checkpoint(_start_training(tmp_path, config, "stopped"), last, sig)
    status = json.loads((run / "status.json").read_text())
    assert returncode == code and status["status"] == "interrupted" and status["reason"] == reason, err
    saved = load_checkpoint(str(last))  # loadable, and what status.json says it holds
    assert saved["epoch"] + 1 == status["epochs_saved"] >= 1
    assert f"training interrupted ({reason}); {last} holds the {status['epochs_saved']} finished epoch(s)" in err
    assert status["resume"] == f"gridyolo train --config {run / 'config.yaml'} --resume {last}"
    if sig == signal.SIGINT:  # the printed command continues the run
        done = subprocess.run([sys.executable, "-m", "gridyolo", *status["resume"].split()[1:], "--name",
                               "resumed", "--trainer.max_epochs", str(status["epochs_saved"] + 1)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        resumed = tmp_path / "runs" / "resumed"
        assert json.loads((resumed / "status.json").read_text())["status"] == "finished"
        history = json.loads((resumed / "metrics.json").read_text())["history"]
        assert [row["epoch"] for row in history] == list(range(status["epochs_saved"] + 1))


def test_an_interruption_before_the_first_checkpoint_says_so(tmp_path, capsys):
    status = RunStatus(tmp_path)
    status.on_exception(None, None, KeyboardInterrupt())
    written = json.loads((tmp_path / "status.json").read_text())
    assert written == {"status": "interrupted", "epochs_saved": 0, "reason": "KeyboardInterrupt",
                       "last_checkpoint": None, "resume": None}  # fmt: skip
    err = capsys.readouterr().err
    assert "no checkpoint was written yet (the first epoch did not finish): nothing to resume" in err


def test_precision_follows_the_accelerator_in_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_precision("cpu") == "32-true"  # was 16-mixed (bf16 on the CPU) on a CUDA machine
    assert default_precision("auto") == "16-mixed"
    assert default_precision("gpu") == default_precision("cuda") == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_precision("auto") == "32-true"


def test_ddp_ranks_draw_their_own_share_and_augmentation_each_epoch(tiny_root):
    reader = build_reader(str(tiny_root), "voc", "train", classes=CLASSES)
    augment = AugmentConfig(scale=0.3, flip=0.5)

    def rank_view(rank: int, epoch: int):
        dataset = DetectionDataset(reader, TrainTransform(64, augment=augment, seed=0), seed=0)
        sampler = EpochShuffleSampler(dataset, seed=0, num_replicas=3, rank=rank)
        sampler.set_epoch(epoch)
        order = list(sampler)
        return order, dataset[order[0]][1]["boxes"]

    for epoch in (0, 1):
        shares = [rank_view(rank, epoch)[0] for rank in range(3)]
        assert {i for share in shares for i in share} == set(range(8))  # all covered (one padded)
        assert len({len(share) for share in shares}) == 1  # equal shares: no rank waits on another
    assert rank_view(0, 0)[0] != rank_view(0, 1)[0]  # a new order each epoch
    # the same image on two ranks is augmented differently (it was the same stream on every rank)
    dataset = {r: DetectionDataset(reader, TrainTransform(64, augment=augment, seed=0), seed=0) for r in (0, 1)}
    for r in (0, 1):
        EpochShuffleSampler(dataset[r], seed=0, num_replicas=2, rank=r).set_epoch(0)
    assert not torch.equal(dataset[0][0][0], dataset[1][0][0])
    # Lightning keeps a DistributedSampler as it is (and calls its set_epoch) instead of wrapping it
    assert isinstance(EpochShuffleSampler(dataset[0]), torch.utils.data.DistributedSampler)


def test_persistent_loader_workers_draw_the_same_batches_as_reforked_ones(tiny_root):
    """A worker forked once sees each epoch through the indices it is sent: its batches equal those of
    workers forked anew every epoch, and differ from one epoch to the next."""

    def epochs(persistent: bool) -> list[list[torch.Tensor]]:
        data = DetectionDataModule(str(tiny_root), "voc", "train", "train", classes=CLASSES, input_size=64,
                                   batch_size=4, num_workers=1, persistent_workers=persistent, check_images=False,
                                   augment=AugmentConfig(scale=0.3, flip=0.5))  # fmt: skip
        data.setup()
        loader = data.train_dataloader()
        assert loader.persistent_workers is persistent
        seen = []
        for epoch in range(3):
            loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
            seen.append([images for images, _ in loader])
        return seen

    persistent, reforked = epochs(True), epochs(False)
    for a, b in zip(persistent, reforked):
        assert len(a) == len(b) == 2 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(persistent[0][0], persistent[1][0])  # a new order / augmentation each epoch


def test_close_mosaic_reaches_persistent_workers(tiny_root):
    """``close_mosaic`` counts back from the trainer's last epoch; a persistent worker (forked in epoch 0)
    stops the mosaics there: epoch 2 of 3 is batch for batch what a run without Mosaic draws."""
    from types import SimpleNamespace

    still = dict(scale=0.0, translate=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=0.0)

    def epochs(augment: AugmentConfig) -> list[list[torch.Tensor]]:
        data = DetectionDataModule(str(tiny_root), "voc", "train", "train", classes=CLASSES, input_size=64,
                                   batch_size=4, num_workers=1, check_images=False, augment=augment)  # fmt: skip
        data.trainer = SimpleNamespace(max_epochs=3, world_size=1, global_rank=0)
        data.setup()
        loader = data.train_dataloader()
        assert loader.persistent_workers
        seen = []
        for epoch in range(3):
            loader.sampler.set_epoch(epoch)
            seen.append([images for images, _ in loader])
        return seen

    closing = epochs(AugmentConfig(**still, mosaic=1.0, close_mosaic=1))
    plain = epochs(AugmentConfig(**still))
    assert not torch.equal(closing[0][0], plain[0][0]) and not torch.equal(closing[1][0], plain[1][0])
    assert all(torch.equal(a, b) for a, b in zip(closing[2], plain[2]))


def test_frozen_backbone_keeps_weights_statistics_and_optimizer_state(tiny_root, tmp_path):
    L.seed_everything(0)
    data = DetectionDataModule(str(tiny_root), "voc", "train", "train", classes=CLASSES, input_size=64,
                               batch_size=4, num_workers=0, check_images=False)  # fmt: skip
    model = GridYoloModule(backbone="darknet_tiny", grid_size=2, head_channels=16, class_names=CLASSES,
                           input_size=64, freeze_backbone_epochs=1, lr=0.01, momentum=0.9, ema_decay=None)  # fmt: skip
    before = {k: v.clone() for k, v in model.model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.model.head.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=1, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    after = model.model.backbone.state_dict()
    assert any("running_mean" in k for k in after)
    for key, value in before.items():  # weights and BatchNorm statistics, across a validation too
        assert torch.equal(value, after[key]), key
    assert any(not torch.equal(v, model.model.head.state_dict()[k]) for k, v in head_before.items())
    state = trainer.optimizers[0].state
    assert all(p not in state for p in model.model.backbone.parameters())  # no momentum was started
    assert any(p in state for p in model.model.head.parameters())


def test_frozen_backbone_under_ddp_style_grads_leaves_optimizer_state_untouched():
    """Under DDP the backbone keeps requires_grad (every rank must reduce the same parameters): its
    gradients are dropped before the step, so neither SGD momentum nor AdamW state moves."""
    for optimizer in ("sgd", "adamw"):
        model = GridYoloModule(backbone="darknet_tiny", grid_size=2, head_channels=16, class_names=CLASSES,
                               input_size=64, freeze_backbone_epochs=1, optimizer=optimizer)  # fmt: skip
        model.backbone_frozen = True
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd" else \
            torch.optim.AdamW(model.parameters(), lr=0.1)  # fmt: skip
        model.model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).sum().backward()
        weights = {k: v.clone() for k, v in model.model.backbone.state_dict().items()}
        model.on_before_optimizer_step(opt)
        opt.step()
        assert all(torch.equal(v, model.model.backbone.state_dict()[k]) for k, v in weights.items())
        assert all(p not in opt.state for p in model.model.backbone.parameters())


def test_when_no_predictor_overlaps_the_closest_is_responsible():
    """Both predictors miss the object (IoU 0); the second is closer, so it gets the coordinate
    gradient (before, the first always did and the second never learned)."""
    loss = YoloV1Loss(grid_size=1, num_boxes=2, num_classes=1)
    target = [{"boxes": torch.tensor([[40.0, 40.0, 60.0, 60.0]]), "labels": torch.tensor([0])}]
    logit = torch.logit
    far = [logit(torch.tensor(v)) for v in (0.05, 0.05, 0.1, 0.1, 0.5)]  # (x, y, sqrt w, sqrt h, conf): a tiny
    near = [logit(torch.tensor(v)) for v in (0.3, 0.3, 0.22, 0.22, 0.5)]  # corner box, and a closer one
    raw = torch.stack([*far, *near, torch.tensor(0.0)])  # neither overlaps the object at [0.4, 0.6]
    raw = raw.reshape(1, 1, 1, 11).requires_grad_(True)
    loss(raw, target, (100, 100))["coord"].backward()
    grad = raw.grad.reshape(-1)
    assert grad[5:9].abs().sum() > 0 and grad[0:4].abs().sum() == 0


def test_exist_ok_never_reuses_a_folder_a_run_wrote_into(tiny_root, tmp_path, capsys):
    from gridyolo.apps.cli import main

    config = tiny_config(tmp_path / "tiny.yaml", tiny_root, trainer__max_epochs=1)
    (tmp_path / "runs" / "exp").mkdir(parents=True)
    (tmp_path / "runs" / "exp" / "config.yaml").write_text("from a run that stopped before its first epoch\n")
    assert main(["train", "--config", str(config), "--project", str(tmp_path / "runs"), "--exist_ok", "true"]) == 0
    assert (tmp_path / "runs" / "exp2" / "weights" / "last.ckpt").exists()
    assert (tmp_path / "runs" / "exp" / "config.yaml").read_text().startswith("from a run")
