"""Run directories (never overwritten) and the callback that closes a run: metrics.json and a summary."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


def new_run_dir(project: str | os.PathLike, name: str, exist_ok: bool = False) -> Path:
    """Create and return ``project/name``, or ``name2``, ``name3``... if taken (atomic ``mkdir``).

    ``exist_ok`` reuses ``project/name`` when it exists but holds no ``weights/`` yet (the demo writes
    its data there first); a directory with weights is never reused.
    """
    if exist_ok:
        wanted = Path(project) / name
        if not (wanted / "weights").exists():
            wanted.mkdir(parents=True, exist_ok=True)
            return wanted
    for i in itertools.count(1):
        candidate = Path(project) / (name if i == 1 else f"{name}{i}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write json atomically (temp file + rename), so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


class RunSummary(L.Callback):
    """Keeps the per-epoch history, and at the end of fit writes ``metrics.json`` and prints a table."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.history: list[dict] = []
        self.start = time.time()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = dict(getattr(pl_module, "last_metrics", {}))
        train_loss = trainer.callback_metrics.get("loss")
        self.history.append(
            {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "train_loss": float(train_loss) if train_loss is not None else None,
                **{k: v for k, v in metrics.items() if isinstance(v, float)},
            }
        )

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        final = dict(getattr(pl_module, "last_metrics", {}))
        summary = {
            **{k: v for k, v in final.items() if k != "per_class"},
            "per_class": final.get("per_class", {}),
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "train_seconds": round(time.time() - self.start, 1),
            "best_map": float(checkpoint.best_model_score)
            if checkpoint and checkpoint.best_model_score is not None
            else None,
            "best_checkpoint": str(checkpoint.best_model_path) if checkpoint else None,
            "history": self.history,
        }
        summary.pop("pr50", None)
        write_json(self.run_dir / "metrics.json", summary)
        self.write_plots(trainer, pl_module, final)
        print(format_metrics_table(final, title=f"final validation ({len(self.history)} evaluations)"))
        print(f"run directory: {self.run_dir}")

    def write_plots(self, trainer: L.Trainer, pl_module: L.LightningModule, final: dict) -> None:
        from gridyolo.evaluation import plots

        data = trainer.datamodule
        plots_dir = self.run_dir / "plots"
        if data is not None and getattr(data, "train_reader", None) is not None:
            plots.plot_label_distribution(data.train_reader.records, data.class_names, str(plots_dir / "labels.png"))
        if self.history:
            plots.plot_training_curves(self.history, str(plots_dir / "curves.png"))
        if final.get("pr50"):
            plots.plot_pr_curves(final["pr50"], str(plots_dir / "pr_curves.png"))
        predictions = getattr(pl_module, "_predictions", None)
        if predictions and data is not None and getattr(data, "val_reader", None) is not None:
            matrix = plots.confusion_matrix(data.val_reader.records, predictions, len(data.class_names))
            plots.plot_confusion_matrix(matrix, data.class_names, str(plots_dir / "confusion_matrix.png"))


def format_metrics_table(metrics: dict, title: str = "metrics") -> str:
    """COCO metrics and per-class AP as a small text table."""
    if not metrics:
        return f"{title}: none (no validation ran)"
    names = [("AP", "map"), ("AP50", "map50"), ("AP75", "map75"), ("APs", "map_small"), ("APm", "map_medium"),
             ("APl", "map_large"), ("AR100", "mar_100")]  # fmt: skip
    lines = [title, "  ".join(f"{label:>6}" for label, _ in names),
             "  ".join(f"{metrics.get(key, float('nan')):6.3f}" for _, key in names)]  # fmt: skip
    per_class = metrics.get("per_class", {})
    if per_class:
        width = max(len(n) for n in per_class)
        lines.append("per-class AP@[.5:.95]:")
        lines += [
            f"  {name:<{width}}  {ap:6.3f}" if ap >= 0 else f"  {name:<{width}}     -" for name, ap in per_class.items()
        ]
    return "\n".join(lines)
