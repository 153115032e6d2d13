"""The callbacks that keep a run's records: best.ckpt across resumes, status.json, metrics.json and the
summary table at the end."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from gridyolo.evaluation.report import format_metrics_table
from gridyolo.evaluation.voc_ap import threshold_text
from gridyolo.files import copy_file, write_json


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt`` of the whole run, across resumes.

    A resumed run writes into a new run directory, and Lightning's ``ModelCheckpoint`` forgets the best
    score when its folder changes, so the first validation after a resume always became "best". This
    one carries the score over and copies the best checkpoint so far into the new folder.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir, old_best = state_dict.get("dirpath"), state_dict.get("best_model_path")
        score = state_dict.get("best_model_score")
        if old_dir == self.dirpath or not old_best or score is None:
            super().load_state_dict(state_dict)
            return
        if not os.path.isfile(old_best):
            rank_zero_warn(f"{old_best}: the best checkpoint before the resume is gone; best.ckpt starts afresh")
            return
        new_best = os.path.join(self.dirpath, os.path.basename(old_best))
        if rank_zero_only.rank == 0:
            os.makedirs(self.dirpath, exist_ok=True)
            copy_file(old_best, new_best)
        self.best_model_score = self.kth_value = score
        self.best_model_path = self.kth_best_model_path = new_best
        self.best_k_models = {new_best: score}


class RunStatus(L.Callback):
    """``status.json`` in the run directory: ``running``, then ``finished``, ``interrupted`` (Ctrl-C,
    SIGTERM) or ``failed``, with what ``last.ckpt`` holds and how to continue; an interruption also
    says so on stderr."""

    def __init__(self, run_dir: str | os.PathLike, resumed_from: str | None = None, resumed_epochs: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.epochs_saved = 0  # epochs finished in the newest last.ckpt
        # a resumed run interrupted before its own first checkpoint: the one it resumed from still holds it all
        self.resumed_from, self.resumed_epochs = resumed_from, resumed_epochs

    def _write(self, status: str, **details: Any) -> None:
        if rank_zero_only.rank == 0:
            write_json(self.run_dir / "status.json", {"status": status, "epochs_saved": self.epochs_saved, **details})

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write("running", started=time.strftime("%Y-%m-%dT%H:%M:%S"))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.epochs_saved = int(checkpoint.get("epoch", -1)) + 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write("finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        interrupted = isinstance(exception, (KeyboardInterrupt, SystemExit))
        reason = "SIGTERM" if isinstance(exception, SystemExit) else exception.__class__.__name__
        last = self.run_dir / "weights" / "last.ckpt"
        config = self.run_dir / "config.yaml"
        if last.is_file() and self.epochs_saved > 0:
            resume = f"gridyolo train --config {config} --resume {last}"
            saved = f"{last} holds the {self.epochs_saved} finished epoch(s); continue with: {resume}"
        elif self.resumed_from and os.path.isfile(self.resumed_from):
            last, self.epochs_saved = Path(self.resumed_from), self.resumed_epochs
            if not config.is_file():  # interrupted before this run wrote its own: the first run's
                config = last.parent.parent / "config.yaml"
            resume = f"gridyolo train --config {config} --resume {last}"
            saved = (f"no epoch finished since the resume; {last}, which it resumed from, is intact and holds "
                     f"{self.epochs_saved} finished epoch(s); continue with: {resume}")  # fmt: skip
        else:
            resume, saved = None, "no checkpoint was written yet (the first epoch did not finish): nothing to resume"
        self._write("interrupted" if interrupted else "failed", reason=reason, last_checkpoint=str(last) if resume
                    else None, resume=resume)  # fmt: skip
        if interrupted and rank_zero_only.rank == 0:  # a failure's own one-line error says what happened
            print(f"gridyolo: training interrupted ({reason}); {saved}", file=sys.stderr, flush=True)


class RunSummary(L.Callback):
    """Keeps the per-epoch history (across resumes), and at the end of fit writes ``metrics.json``,
    the plots and prints a table.

    One history row per training epoch, written after that epoch's validation: ``epoch``, ``step``,
    ``train_loss`` (the epoch's mean loss) and the epoch's validation metrics when it validated.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.history: list[dict] = []
        self.start = time.time()

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        train_loss = trainer.callback_metrics.get("train/loss")
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "train_loss": float(train_loss) if train_loss is not None else None,
        }
        if getattr(pl_module, "last_metrics_epoch", None) == trainer.current_epoch:
            row.update({k: v for k, v in pl_module.last_metrics.items() if isinstance(v, float)})
        self.history.append(row)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        best_path = str(checkpoint.best_model_path) if checkpoint and checkpoint.best_model_path else None
        final, source = self.evaluate_best(trainer, pl_module, best_path)
        summary = {
            **{k: v for k, v in final.items() if k not in ("per_class", "pr50")},
            "per_class": final.get("per_class", {}),
            "metrics_of": source,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "train_seconds": round(time.time() - self.start, 1),
            "best_map": float(checkpoint.best_model_score)
            if checkpoint and checkpoint.best_model_score is not None
            else None,
            "best_checkpoint": best_path,
            "history": self.history,
        }
        write_json(self.run_dir / "metrics.json", summary)
        self.write_plots(trainer, final)
        print(format_metrics_table(final, title=f"{source} on the validation split ({len(self.history)} epochs run)"))
        if final.get("f1_threshold") is not None:
            print(f"detect's default --conf: {threshold_text(final['f1_threshold'])} (the F1-optimal score threshold, "
                  f"F1 {final['f1']:.3f}; stored in the checkpoint)")  # fmt: skip
        print(f"run directory: {self.run_dir}")

    def evaluate_best(self, trainer: L.Trainer, pl_module: L.LightningModule, best_path: str | None) -> tuple:
        """Metrics, PR curves and confusion matrix of ``best.ckpt`` (what a user ships), evaluated again
        on the validation split; the last validation's when there is no best checkpoint."""
        data = trainer.datamodule
        last = dict(getattr(pl_module, "last_metrics", {}))
        if not best_path or not os.path.isfile(best_path) or getattr(data, "val_reader", None) is None:
            return last, "the last validation"
        from gridyolo.deploy.predictor import load_predictor
        from gridyolo.evaluation.runner import predict_reader
        from gridyolo.evaluation.scoring import score_detections

        hp = pl_module.hparams
        predictor = load_predictor(best_path, "torch", str(pl_module.device), None, hp.conf_threshold,
                                   hp.iou_threshold, hp.max_detections, hp.channels_last)  # as validation ran
        predictions = predict_reader(predictor, data.val_reader, data.val_batch_size)
        metrics = score_detections(data.val_reader, predictions, None, hp.eval_backend, None, None,
                                   predictor.info["model_conf_threshold"])  # fmt: skip
        self._best_predictions = predictions
        return metrics, f"best.ckpt (epoch {predictor.info['epoch']})"

    def write_plots(self, trainer: L.Trainer, final: dict) -> None:
        from gridyolo.evaluation import plots

        data = trainer.datamodule
        plots_dir = self.run_dir / "plots"
        if data is not None and getattr(data, "train_reader", None) is not None:
            plots.plot_label_distribution(data.train_reader.records, data.class_names, str(plots_dir / "labels.png"))
        if self.history:
            plots.plot_training_curves(self.history, str(plots_dir / "curves.png"))
        if final.get("pr50"):
            plots.plot_pr_curves(final["pr50"], str(plots_dir / "pr_curves.png"))
        predictions = getattr(self, "_best_predictions", None)
        if predictions and data is not None and getattr(data, "val_reader", None) is not None:
            threshold = final.get("confusion_threshold")
            matrix = plots.confusion_matrix(data.val_reader.records, predictions, len(data.class_names), threshold)
            plots.plot_confusion_matrix(matrix, data.class_names, str(plots_dir / "confusion_matrix.png"), threshold)
