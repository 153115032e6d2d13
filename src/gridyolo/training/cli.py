"""``gridyolo train``: LightningCLI over GridYoloModule + DetectionDataModule, one run directory per run.

``gridyolo train --config configs/bccd_lite0.yaml --trainer.max_epochs 3 --data.root PATH`` — any
``--model.*``, ``--data.*``, ``--trainer.*`` key can be given or overridden with a dotted flag.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities.exceptions import SIGTERMException

from gridyolo.allocator import keep_freed_memory
from gridyolo.data.datamodule import DetectionDataModule, mosaic_epochs
from gridyolo.errors import GridyoloError
from gridyolo.files import new_run_dir, write_json
from gridyolo.training.callbacks import BestCheckpoint, RunStatus, RunSummary
from gridyolo.training.interrupts import CtrlC
from gridyolo.training.module import GridYoloModule
from gridyolo.training.resume import refuse_changed_settings

# The one thing handed between processes: Lightning's DDP launcher re-runs this command for ranks > 0
# with the parent's environment, and they must write into the run directory rank 0 created.
RUN_DIR_ENV = "GRIDYOLO_RUN_DIR"


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``, set by Lightning's launcher; 0 alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


class RunPlacement:
    """Where this run writes, and the folders it created to get there, so a refused run removes them."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.created: list[Path] = []  # the run directory's project folders that did not exist, innermost first

    def allocate(self, project: Path, name: str, exist_ok: bool) -> Path:
        self.created = [p for p in (project, *project.parents) if not p.exists()]
        self.run_dir = new_run_dir(project, name, exist_ok)
        return self.run_dir

    def remove_if_empty(self) -> None:
        """A refused run leaves nothing: its run directory, and the project folders it created, if empty."""
        if self.run_dir is None or local_rank() != 0:
            return
        with contextlib.suppress(OSError):  # not empty, or gone: keep whatever is there
            os.rmdir(self.run_dir)
            for folder in self.created:
                os.rmdir(folder)


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (ETA included) without the logger version number, with the training step's loss
    terms and LR read from the module at most every ``progress_refresh_s`` (each read waits for a GPU)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[str, float] = {}
        self._read_at = -math.inf

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if trainer.training and hasattr(pl_module, "progress_values"):
            now = time.monotonic()
            if now - self._read_at >= getattr(pl_module, "progress_refresh_s", 0.0):
                self._values, self._read_at = pl_module.progress_values(), now
            items = {**{k: f"{v:.3g}" for k, v in self._values.items()}, **items}
        return items


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, reading with ``weights_only=True`` (``checkpoint.safe_torch_load``):
    ``--resume`` of a checkpoint that carries a pickle payload refuses it instead of running it."""

    def load_checkpoint(self, path, *args, **kwargs):  # Lightning >= 2.5 adds a weights_only argument
        from gridyolo.models.checkpoint import safe_torch_load

        checkpoint = safe_torch_load(str(path))
        # a resumed run gets the time limit it is given now (--trainer.max_time), not what is left of the
        # first run's: a run stopped by its time limit would otherwise stop again at once
        callbacks = checkpoint.get("callbacks")
        if isinstance(callbacks, dict):
            checkpoint["callbacks"] = {k: v for k, v in callbacks.items() if not str(k).startswith("Timer")}
        return checkpoint


class GridYoloCLI(LightningCLI):
    def __init__(self, *args, placement: RunPlacement, **kwargs) -> None:
        self.placement = placement  # before LightningCLI's __init__, which runs the hooks below
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--project", default="runs/train", help="folder of the run directories")
        parser.add_argument("--name", default="exp", help="run name; incremented (exp2, exp3...) when taken")
        parser.add_argument("--resume", default=None, help="checkpoint to resume from (model, EMA, optimizer, ...)")
        parser.add_argument("--exist_ok", type=bool, default=False, help="reuse project/name if it holds no weights")
        parser.link_arguments("data.input_size", "model.input_size")
        parser.link_arguments("data.resize_mode", "model.resize_mode")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.category_ids", "model.category_ids", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        self.ctrl_c = CtrlC()
        resume = self.config.get("resume")
        self.resume_epochs_done = 0
        if resume is not None:
            from gridyolo.models.checkpoint import load_checkpoint

            # a clear error now rather than a traceback from inside fit; and what it holds
            self.resume_checkpoint = load_checkpoint(resume)
            self.resume_epochs_done = int(self.resume_checkpoint.get("epoch", -1)) + 1
        # DDP ranks > 0 write into the run directory rank 0 created, not one of their own
        inherited = os.environ.get(RUN_DIR_ENV)
        if inherited and local_rank() > 0:
            self.run_dir = Path(inherited)
        else:
            config = self.config
            self.run_dir = self.placement.allocate(Path(config["project"]), config["name"], config["exist_ok"])
            os.environ[RUN_DIR_ENV] = str(self.run_dir)

    def record_validation_split(self) -> None:
        """``val_split.json``: which images a carved validation split holds (``data.carve``)."""
        carved = getattr(self.datamodule, "carved", None)
        if carved and local_rank() == 0:
            write_json(self.run_dir / "val_split.json", carved)  # which images validated this run

    def instantiate_trainer(self, **kwargs):
        trainer_config = self._get(self.config_init, "trainer", default={})
        config_callbacks = trainer_config.get("callbacks") or []
        callbacks = [
            *config_callbacks,
            BestCheckpoint(
                dirpath=self.run_dir / "weights",
                filename="best",
                monitor="val/map",
                mode="max",
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
            # last.ckpt after every epoch (Lightning's save_last only fires when a best checkpoint was saved)
            ModelCheckpoint(
                dirpath=self.run_dir / "weights",
                filename="last",
                monitor=None,
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
            RunSummary(self.run_dir),
            RunStatus(self.run_dir, self.config.get("resume"), self.resume_epochs_done),
            self.ctrl_c,
        ]
        if trainer_config.get("enable_progress_bar", True) is not False:
            callbacks.append(ProgressBar())
        loggers = [
            CSVLogger(self.run_dir, name="", version=""),
            TensorBoardLogger(self.run_dir, name="", version="tensorboard", default_hp_metric=False),
        ]
        plugins = trainer_config.get("plugins") or []
        plugins = [*(plugins if isinstance(plugins, list) else [plugins]), SafeCheckpointIO()]
        precision = trainer_config.get("precision") or default_precision(trainer_config.get("accelerator", "auto"))
        return super().instantiate_trainer(
            callbacks=callbacks, logger=loggers, default_root_dir=str(self.run_dir), plugins=plugins,
            precision=precision, **kwargs,
        )  # fmt: skip


def default_precision(accelerator: object) -> str:
    """``16-mixed`` when the run is on CUDA, else ``32-true`` (bf16 autocast is ~75x slower on CPUs), for
    the accelerator the run really uses: ``--trainer.accelerator cpu`` on a CUDA machine is fp32."""
    name = accelerator.lower() if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    on_cuda = name in ("gpu", "cuda", "cudaaccelerator") or (name == "auto" and torch.cuda.is_available())
    return "16-mixed" if on_cuda else "32-true"


def trainer_defaults() -> dict:
    """``precision: null`` means ``default_precision`` of the accelerator in use."""
    return {
        "accelerator": "auto",
        "precision": None,
        "num_sanity_val_steps": 0,
        "max_epochs": 10,
        "log_every_n_steps": 10,
    }


def run_train(argv: Sequence[str]) -> int:
    keep_freed_memory()  # a third fewer CPU-seconds per step on glibc (gridyolo.allocator)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # argv is ours, on purpose
    # validation metrics are computed on rank 0 and broadcast: every rank logs the same value already
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting")
    # a run folder is new, or holds no run records (files.new_run_dir): nothing of a run's logs is lost
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    if local_rank() == 0:
        os.environ.pop(RUN_DIR_ENV, None)  # left by an earlier run in this process; DDP ranks > 0 need it
    placement = RunPlacement()
    try:
        cli = GridYoloCLI(
            GridYoloModule,
            DetectionDataModule,
            run=False,
            args=list(argv),
            trainer_defaults=trainer_defaults(),
            seed_everything_default=0,
            parser_kwargs={"exit_on_error": False, "prog": "gridyolo train"},
            save_config_kwargs={"overwrite": False},
            placement=placement,
        )
    except ArgumentError as exc:
        raise GridyoloError(f"bad training configuration: {' '.join(str(exc).split())}") from None
    except BaseException:
        placement.remove_if_empty()  # a run that never started leaves no folder behind
        raise
    augment = cli.datamodule.augment
    if augment.close_mosaic > 0 and augment.mosaic > 0:  # refused here, before the run starts
        try:
            with_mosaic = mosaic_epochs(augment.close_mosaic, cli.trainer.max_epochs)
        except GridyoloError:
            placement.remove_if_empty()
            raise
        if with_mosaic == 0 and local_rank() == 0:
            note = (f"augment.close_mosaic {augment.close_mosaic} >= --trainer.max_epochs {cli.trainer.max_epochs}: "
                    "no epoch of this run uses Mosaic")  # fmt: skip
            print(f"gridyolo: warning: {note}", file=sys.stderr, flush=True)
    if cli.config.get("resume"):
        try:
            _refuse_a_resume_with_nothing_left(cli.config["resume"], cli.resume_epochs_done, cli.trainer.max_epochs)
            refuse_changed_settings(cli.config["resume"], cli.resume_checkpoint, cli.model, cli.datamodule)
        except GridyoloError:
            placement.remove_if_empty()
            raise
        del cli.resume_checkpoint  # Lightning reads it again for fit; do not hold two copies
    if local_rank() == 0:
        _warn_if_the_grid_does_not_fit(cli.model, cli.datamodule)
    cli.ctrl_c.install()
    try:
        cli.record_validation_split()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("resume"))
    except SystemExit as exc:  # Lightning exits 1 after Ctrl-C; SIGTERM arrives as SIGTERMException
        if isinstance(exc, SIGTERMException):
            return 128 + signal.SIGTERM
        if cli.trainer.state.status == TrainerStatus.INTERRUPTED:
            return 128 + signal.SIGINT
        raise
    finally:
        cli.ctrl_c.restore()
    return 0


def _warn_if_the_grid_does_not_fit(model: GridYoloModule, data: DetectionDataModule) -> None:
    """Before the first step: a grid the feature map does not divide into (ONNX export would fail) or
    one where many objects lose their cell (``data.grid_fit.grid_warnings``)."""
    from gridyolo.data.grid_fit import grid_warnings
    from gridyolo.models import backbone_stride

    data.prepare_readers()
    hp = model.hparams
    stride = backbone_stride(hp.backbone)
    for note in grid_warnings(data.train_reader.records, hp.grid_size, hp.input_size, stride, hp.resize_mode):
        print(f"gridyolo: warning: {note}", file=sys.stderr, flush=True)


def _refuse_a_resume_with_nothing_left(resume: str, done: int, max_epochs: int | None) -> None:
    if max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
        raise GridyoloError(f"{resume} holds {done} finished epoch(s) and --trainer.max_epochs is {max_epochs}: "
                            f"nothing left to train; give --trainer.max_epochs {done + 1} or more")  # fmt: skip
