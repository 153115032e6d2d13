"""Training: the LightningModule alone (mocked trainer), the CLI run directory, resume, bad runs."""

from __future__ import annotations

import csv
import json
from unittest.mock import MagicMock

import numpy as np
import pytest
import torch

from conftest import ROOT
from gridyolo.apps.cli import main
from gridyolo.data.datamodule import DetectionDataModule
from gridyolo.models import BACKBONES, stem_layers
from gridyolo.models.checkpoint import detector_from_checkpoint
from gridyolo.training.module import GridYoloModule, NonFiniteLossError
from train_helpers import tiny_bccd, tiny_config

CLASSES = ["RBC", "WBC", "Platelets"]


@pytest.fixture(scope="module")
def tiny_root(bccd_root, tmp_path_factory):
    return tiny_bccd(tmp_path_factory.mktemp("tiny") / "bccd", count=8)


def _module(**kwargs):
    module = GridYoloModule(
        "darknet_tiny", grid_size=4, head_channels=32, class_names=CLASSES, input_size=128, **kwargs
    )
    module.log = MagicMock()
    module.log_dict = MagicMock()
    return module


def test_module_steps_with_a_mocked_trainer(tiny_root):
    """As NanoDet tests its task: the LightningModule's steps run without a Trainer."""
    data = DetectionDataModule(str(tiny_root), "voc", "train", "train", classes=CLASSES, input_size=128, num_workers=0)
    data.setup()
    module = _module()
    trainer = MagicMock()
    trainer.datamodule = data
    trainer.global_rank = 0
    trainer.strategy.broadcast = lambda obj, src=0: obj
    trainer.optimizers = [MagicMock(param_groups=[{"lr": 0.01}])]
    trainer.global_step, trainer.log_every_n_steps = 0, 50  # the first step is one the loggers write
    module.trainer = trainer
    batch = next(iter(data.train_dataloader()))
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    logged = {call.args[0] for call in module.log.call_args_list}
    assert {"loss", "lr"} <= logged
    module.on_train_batch_end(None, batch, 0)  # EMA update
    module.on_validation_epoch_start()
    for batch in data.val_dataloader():
        module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert module.last_metrics["images"] == 8 and set(module.last_metrics["per_class"]) == set(CLASSES)
    assert 0.0 <= module.last_metrics["map50"] <= 1.0


def test_non_finite_loss_stops_with_the_terms():
    module = _module()
    module.trainer = MagicMock(current_epoch=3, global_step=41)
    images = torch.zeros(1, 3, 128, 128, dtype=torch.uint8)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]), "labels": torch.tensor([0])}]
    module.model.head.predict.bias.data[:] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 3 step 41: coord=nan"):
        module.training_step((images, targets), 0)


def test_optimizer_groups_and_frozen_backbone():
    module = _module(backbone_lr_factor=0.1, freeze_backbone_epochs=1, weight_decay=5e-4)
    module.trainer = MagicMock(estimated_stepping_batches=20, max_epochs=2)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    groups = optimizer.param_groups
    assert {(g["is_backbone"], g["weight_decay"] > 0) for g in groups} == {
        (True, True),
        (True, False),
        (False, True),
        (False, False),
    }
    no_decay = [p for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert all(p.ndim == 1 for p in no_decay)  # biases and norm weights only
    assert all(g["lr"] == 0 for g in groups if g["is_backbone"])  # frozen during epoch 0
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    backbone = [g["lr"] for g in groups if g["is_backbone"]]
    head = [g["lr"] for g in groups if not g["is_backbone"]]
    assert backbone[0] > 0 and backbone[0] == pytest.approx(head[0] * 0.1)


@pytest.mark.parametrize("name", ["darknet_tiny", "efficientnet_lite0_s16", "resnet18"])
def test_the_frozen_stem_ends_where_its_stride_says(name):
    """``freeze_stride`` 4 / 8: the frozen layers run at stride <= 4 / 8 and the first layer after them
    goes beyond (nothing the stride allows is left trainable, nothing past it frozen)."""
    from gridyolo.models import build_backbone

    backbone = build_backbone(name).module.eval()
    for max_stride in (4, 8):
        stem = stem_layers(backbone, max_stride)
        x = torch.zeros(1, 3, 64, 64)
        with torch.no_grad():
            for layer in stem:
                x = layer(x)
        assert 64 // x.shape[-1] == max_stride, (name, max_stride)
    assert len(stem_layers(backbone, 8)) > len(stem_layers(backbone, 4))
    with pytest.raises(ValueError, match="stride 4 or 8"):
        stem_layers(backbone, 16)


def test_frozen_stem_stays_put_and_channels_last_changes_no_numbers(tiny_root):
    data = DetectionDataModule(str(tiny_root), "voc", "train", "train", classes=CLASSES, input_size=128, num_workers=0)
    data.setup()
    images, targets = next(iter(data.train_dataloader()))
    torch.manual_seed(0)
    plain = _module()
    torch.manual_seed(0)
    nhwc = _module(channels_last=True)
    torch.manual_seed(0)
    fast = _module(freeze_stem=True, channels_last=True)
    fast.trainer = MagicMock(current_epoch=0, world_size=1, optimizers=[MagicMock(param_groups=[{"lr": 0.01}])])
    plain.trainer = nhwc.trainer = fast.trainer
    stem = stem_layers(fast.model.backbone)
    assert len(stem) == 5  # conv, pool, conv, pool, conv: darknet_tiny's layers at stride <= 4
    before = {k: v.clone() for k, v in fast.model.backbone.layers[: len(stem)].state_dict().items()}
    fast.train()
    fast.on_train_epoch_start()
    assert all(not layer.training for layer in stem) and fast.model.head.training
    loss_nhwc, loss_plain = nhwc.training_step((images, targets), 0), plain.training_step((images, targets), 0)
    assert loss_nhwc.item() == pytest.approx(loss_plain.item(), rel=1e-4)  # same init: NHWC is only a layout
    loss_fast = fast.training_step((images, targets), 0)
    loss_fast.backward()
    optimizer = torch.optim.SGD(fast.model.parameters(), lr=0.1)
    optimizer.step()
    after = fast.model.backbone.layers[: len(stem)].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics unchanged
    assert all(p.grad is None for layer in stem for p in layer.parameters())
    assert fast.model.head.predict.weight.grad is not None


def _train(tmp_path, config, *extra):
    return main(["train", "--config", str(config), "--project", str(tmp_path / "runs"), *extra])


def test_cli_run_directory(tiny_root, tmp_path, capsys):
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root, trainer__max_epochs=1)
    assert _train(tmp_path, config) == 0
    assert _train(tmp_path, config, "--model.grid_size", "5") == 0  # a second run never overwrites the first
    first, second = tmp_path / "runs" / "exp", tmp_path / "runs" / "exp2"
    for run in (first, second):
        for name in ("weights/last.ckpt", "weights/best.ckpt", "config.yaml", "metrics.csv", "metrics.json"):
            assert (run / name).is_file(), name
        assert any((run / "tensorboard").iterdir())
    for plot in ("labels.png", "curves.png", "pr_curves.png", "confusion_matrix.png"):
        assert (first / "plots" / plot).stat().st_size > 1000, plot
    metrics = json.loads((first / "metrics.json").read_text())
    assert {"map", "map50", "per_class", "best_map", "history"} <= set(metrics)
    assert "grid_size: 5" in (second / "config.yaml").read_text()
    model, meta = detector_from_checkpoint(str(second / "weights" / "best.ckpt"))
    assert meta.class_names == CLASSES and meta.grid_size == 5 and meta.input_size == 128
    assert meta.category_ids == [1, 2, 3] and meta.mean == [0.0, 0.0, 0.0]
    assert "run directory:" in capsys.readouterr().out


class SimulatedCrashError(RuntimeError):
    pass


def test_resume_gives_the_same_weights_and_metrics(tiny_root, tmp_path, monkeypatch):
    """2 epochs in one go == a 2-epoch run that crashed after epoch 1, resumed from its last.ckpt."""
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root)
    assert _train(tmp_path, config, "--name", "straight") == 0

    start_epoch = GridYoloModule.on_train_epoch_start

    def crash(self):
        if self.current_epoch == 1:
            raise SimulatedCrashError("crash at the start of the second epoch, after epoch 1's last.ckpt")
        start_epoch(self)

    with monkeypatch.context() as patch:
        patch.setattr(GridYoloModule, "on_train_epoch_start", crash)
        with pytest.raises(SimulatedCrashError):
            _train(tmp_path, config, "--name", "half")
    half = tmp_path / "runs" / "half" / "weights" / "last.ckpt"
    assert torch.load(half, weights_only=False)["epoch"] == 0
    assert _train(tmp_path, config, "--name", "resumed", "--resume", str(half)) == 0
    straight = torch.load(tmp_path / "runs" / "straight" / "weights" / "last.ckpt", weights_only=False)
    resumed = torch.load(tmp_path / "runs" / "resumed" / "weights" / "last.ckpt", weights_only=False)
    assert straight["epoch"] == resumed["epoch"] and straight["global_step"] == resumed["global_step"]
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)
    a = json.loads((tmp_path / "runs" / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "runs" / "resumed" / "metrics.json").read_text())
    assert a["map"] == b["map"] and a["per_class"] == b["per_class"]
    # the record continues across the resume: the same history, the same best score and best.ckpt
    assert [h["epoch"] for h in b["history"]] == [0, 1] and b["history"] == a["history"]
    assert a["best_map"] == b["best_map"] == pytest.approx(max(h["map"] for h in a["history"]), abs=1e-7)
    best = torch.load(tmp_path / "runs" / "resumed" / "weights" / "best.ckpt", weights_only=False)
    assert best["epoch"] == int(np.argmax([h["map"] for h in a["history"]]))


def _csv_by_epoch(path) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for row in csv.DictReader(path.open()):
        rows.setdefault(int(row["epoch"]), {}).update({k: float(v) for k, v in row.items() if v and k != "epoch"})
    return rows


def test_history_agrees_with_metrics_csv_epoch_by_epoch(tiny_root, tmp_path):
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root, trainer__max_epochs=3)
    assert _train(tmp_path, config, "--name", "run") == 0
    run = tmp_path / "runs" / "run"
    history = json.loads((run / "metrics.json").read_text())["history"]
    csv_rows = _csv_by_epoch(run / "metrics.csv")
    assert [h["epoch"] for h in history] == [0, 1, 2] == sorted(csv_rows)  # the last validation included
    for h in history:
        row = csv_rows[h["epoch"]]
        assert h["map"] == pytest.approx(row["val/map"], abs=1e-6) and h["map50"] == pytest.approx(row["val/map50"])
        assert h["train_loss"] == pytest.approx(row["train/loss"], rel=1e-6)
        steps = [v for k, v in row.items() if k == "loss"]
        assert steps  # per-step losses are logged too; the history holds the epoch mean
    final = json.loads((run / "metrics.json").read_text())
    best = max(history, key=lambda h: h["map"])  # the final metrics are best.ckpt's, evaluated again
    assert final["metrics_of"] == f"best.ckpt (epoch {best['epoch']})"
    assert final["map"] == pytest.approx(best["map"], abs=1e-9)


def test_best_checkpoint_keeps_the_best_score_across_a_resume(tmp_path):
    from gridyolo.training.callbacks import BestCheckpoint

    old = tmp_path / "old" / "weights"
    old.mkdir(parents=True)
    (old / "best.ckpt").write_bytes(b"best weights of epoch 3")
    callback = BestCheckpoint(dirpath=tmp_path / "new" / "weights", filename="best", monitor="val/map", mode="max")
    state = {"dirpath": str(old), "best_model_path": str(old / "best.ckpt"), "best_model_score": torch.tensor(0.5),
             "kth_best_model_path": str(old / "best.ckpt"), "kth_value": torch.tensor(0.5),
             "best_k_models": {str(old / "best.ckpt"): torch.tensor(0.5)}, "last_model_path": ""}  # fmt: skip
    callback.load_state_dict(state)
    copied = tmp_path / "new" / "weights" / "best.ckpt"
    assert copied.read_bytes() == b"best weights of epoch 3" and callback.best_model_path == str(copied)
    trainer = MagicMock()
    trainer.strategy.reduce_boolean_decision = lambda decision, all=True: decision
    assert not callback.check_monitor_top_k(trainer, torch.tensor(0.3))  # a worse epoch after the resume
    assert callback.check_monitor_top_k(trainer, torch.tensor(0.6))


def _one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    err = "\n".join(line for line in err.splitlines() if not line.startswith("gridyolo: warning: "))
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gridyolo: error: ")
    import re

    assert re.search(pattern, err), err


def test_bad_runs_fail_with_one_line(tiny_root, tmp_path, capsys):
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root, trainer__max_epochs=1)
    assert _train(tmp_path, config, "--model.no_such_key", "1") == 2
    _one_line_error(capsys, r"bad training configuration: .*no_such_key")
    assert _train(tmp_path, config, "--data.root", str(tmp_path / "nowhere")) == 2
    _one_line_error(capsys, r"nowhere: dataset root does not exist")
    (tiny_root / "ImageSets" / "Main" / "empty.txt").write_text("")
    assert _train(tmp_path, config, "--data.train_split", "empty") == 2
    _one_line_error(capsys, r"no usable images in the training split 'empty'")
    assert _train(tmp_path, config, "--data.augment.mosaic", "0.5", "--data.augment.close_mosaic", "1",
                  "--trainer.max_epochs", "-1", "--trainer.max_steps", "2") == 2  # fmt: skip
    _one_line_error(capsys, r"augment.close_mosaic 1: needs --trainer.max_epochs \(it counts back from it\)")
    assert _train(tmp_path, config, "--data.augment.close_mosaic", "-1") == 2
    _one_line_error(capsys, r"bad training configuration: .*close_mosaic")
    assert not (tmp_path / "runs" / "exp").exists()  # a refused run leaves no folder
    # a config's close_mosaic longer than a shortened run: the run goes on, without Mosaic, and says so
    assert _train(tmp_path, config, "--data.augment.mosaic", "0.5", "--data.augment.close_mosaic", "10") == 0
    assert "augment.close_mosaic 10 >= --trainer.max_epochs 1: no epoch of this run uses Mosaic" in (
        capsys.readouterr().err
    )


def test_class_count_mismatch_on_resume_and_eval(tiny_root, tmp_path, capsys, coco128_root):
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root, trainer__max_epochs=1)
    assert _train(tmp_path, config) == 0
    last = tmp_path / "runs" / "exp" / "weights" / "last.ckpt"
    capsys.readouterr()
    assert _train(tmp_path, config, "--resume", str(last), "--data.classes", "[RBC, WBC, Platelets, Other]",
                  "--trainer.max_epochs", "2") == 2  # fmt: skip
    _one_line_error(capsys, r"trained with other settings \(data.classes \[.RBC., .WBC., .Platelets.\] -> "
                            r"\[.RBC., .WBC., .Platelets., .Other.\]\)")
    assert main(["eval", "--weights", str(last), "--data", str(coco128_root), "--format", "coco",
                 "--split", "train2017"]) == 2  # fmt: skip
    _one_line_error(
        capsys, r"its 3 classes do not match the dataset's 80 \(only the model has: RBC, WBC, Platelets; only the data"
    )


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_root, tmp_path, capsys, monkeypatch):
    from gridyolo.core.loss import YoloV1Loss

    forward = YoloV1Loss.forward
    calls = {"n": 0}

    def poisoned(self, raw, targets, input_hw):
        losses = forward(self, raw, targets, input_hw)
        calls["n"] += 1
        if self.training and calls["n"] > 4:  # 2 steps + 2 val batches in epoch 0, then NaN in epoch 1
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(YoloV1Loss, "forward", poisoned)
    config = tiny_config(tmp_path / "tiny.yaml", tiny_root)
    assert _train(tmp_path, config) == 2
    _one_line_error(capsys, r"non-finite loss at epoch 1 step 2: .*total=nan")
    last = torch.load(tmp_path / "runs" / "exp" / "weights" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse_and_name_real_parts(config, capsys):
    """Every config in configs/ goes through the train CLI's parser (types, keys) and names a backbone
    and a data format that exist: a typo there would only show when a user starts a long run."""
    import yaml

    with pytest.raises(SystemExit) as done:
        main(["train", "--config", str(config), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["backbone"] in BACKBONES
    assert printed["data"]["format"] in ("coco", "voc", "yolo")
