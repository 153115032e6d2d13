"""Accuracy on a CPU budget: fine-tune with the config's schedule, capped at a wall-clock budget
(``--trainer.max_time``), choose best.ckpt on a validation split that is not the test split, then
evaluate on test once.

- ``--dataset bccd``: bccd trainval (15% carved out for validation by the config) -> bccd test.
- ``--dataset synthetic``: the demo's synthetic shapes (its train / val splits, plus 300 test images
  drawn after them from the same seeded generator) with ``configs/demo.yaml`` -> synthetic test.
- ``--dataset coco128_large``: the coco128 images whose objects are all large, one class (``coco128_large_data``),
  with ``configs/custom_cpu.yaml`` at 256 px: which grid size a user should pick for large objects.

The schedule must fit the budget: with an open-ended ``max_epochs`` the cosine never anneals
(measured: 0.74 mAP50 at 20 min, LR still 1e-3). Skipped by ``make bench QUICK=1``.

    python benchmarks/bench_accuracy.py [--minutes 20] [--dataset bccd] [--models NAME ...] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

from common import DATA, RESULTS, ROOT, provenance, record

from gridyolo.files import new_run_dir, write_json

# stride-32 backbones at 320 px: a 10x10 map, so S=10; no ImageNet weights reachable: random init
FROM_SCRATCH = ["--model.weights", "null", "--model.grid_size", "10"]


def loss_args(box: str, conf: str, cls: str, *more: str) -> list[str]:
    """All three loss keys, the assignment and the ignore rule, always: a config's own choice must not leak
    into a run named for another (a later ``--model.assign`` in ``more`` wins: the last value of a key is
    the one used)."""
    return ["--model.box_loss", box, "--model.conf_loss", conf, "--model.class_loss", cls,
            "--model.assign", "responsible", "--model.ignore_iou", "null", *more]  # fmt: skip


YOLOV1 = loss_args("sse", "sse", "sse")
LOSSES = {  # the loss options of core.loss.YoloV1Loss (issue 14) besides YOLOv1's
    "bce_ce": loss_args("sse", "bce", "ce"),
    "ciou_bce_ce": loss_args("ciou", "bce", "ce"),
    "sse+ciou_bce_ce": loss_args("sse+ciou", "bce", "ce"),
    "giou_bce_ce": loss_args("giou", "bce", "ce"),
    "diou_bce_ce": loss_args("diou", "bce", "ce"),
    "ciou": loss_args("ciou", "sse", "sse"),
    # λcoord 5 balances SSE on √w, √h; a (1 - CIoU) term is larger, and with it coord is ~2/3 of the loss
    "ciou_bce_ce_coord2": loss_args("ciou", "bce", "ce", "--model.lambda_coord", "2"),
}
BEST_LOSS = LOSSES["sse+ciou_bce_ce"]  # the demo's loss since the loss options were measured
HEADS = {  # the grid heads of models.head besides the pool head (with the best loss: one change at a time)
    head: [*BEST_LOSS, "--model.head", head] for head in ("space_to_depth", "space_to_depth_s8")
}
ASSIGNMENTS = {  # which predictors learn an object (core.loss: assign, ignore_iou), with the best loss
    "all_predictors": [*BEST_LOSS, "--model.assign", "all_predictors"],
    "ignore_iou": [*BEST_LOSS, "--model.ignore_iou", "0.5"],
    "one_box": [*BEST_LOSS, "--model.num_boxes", "1"],  # B=1: the one predictor gets every object of its cell
    "all_predictors_b4": [*BEST_LOSS, "--model.assign", "all_predictors", "--model.num_boxes", "4"],
    # the FCOS comparator's CPU-seconds on the synthetic shapes (~2x a 12-epoch grid run)
    "all_predictors_24_epochs": [*BEST_LOSS, "--model.assign", "all_predictors", "--trainer.max_epochs", "24"],
    # cheaper epochs: the backbone frozen up to stride 8 (no backward through the stride-8 stage)
    "all_predictors_freeze8": [*BEST_LOSS, "--model.assign", "all_predictors", "--model.freeze_stride", "8"],
    # YOLOv2's ignore rule with both predictors learning: what made the fine grid win on coco128_large
    "all_predictors_ignore_iou": [*BEST_LOSS, "--model.assign", "all_predictors", "--model.ignore_iou", "0.5"],
}
FREEZE8 = ["--model.freeze_stride", "8"]
# the demo config before its grid moved to 8 and its head to space_to_depth_s8
DEMO_S4 = ["--model.grid_size", "4", "--model.ignore_iou", "null", "--model.head", "pool"]
S8_IGNORE = [*ASSIGNMENTS["all_predictors_ignore_iou"], "--model.grid_size", "8"]
S2D_S8 = ["--model.head", "space_to_depth_s8"]
SYNTHETIC_OPTIONS = {  # the demo config at S=4; "demo" itself with YOLOv1's loss (the demo's is sse+ciou/bce/ce)
    "demo": YOLOV1,
    **{f"demo_{name}": args for name, args in LOSSES.items()},
    **{f"demo_{name}": args for name, args in HEADS.items()},
    **{f"demo_{name}": args for name, args in ASSIGNMENTS.items()},
    # the input size (the demo's 128 px halves the ~250 px images): S stays 4
    "demo_256": [*BEST_LOSS, "--data.input_size", "256"],
    "demo_28_epochs": [*BEST_LOSS, "--trainer.max_epochs", "28"],  # ~ demo_256's minutes
    "demo_256_space_to_depth_s8": [*HEADS["space_to_depth_s8"], "--data.input_size", "256"],
    "demo_all_predictors_24_epochs_freeze8": [*ASSIGNMENTS["all_predictors_24_epochs"], *FREEZE8],
    # the feature map's own grid (8x8 at 128 px): each shape spans 2-4 cells; YOLOv2's ignore rule spares
    # the confident boxes of the cells around its own (what made S=16 win on coco128_large)
    "demo_s8_ignore_iou": S8_IGNORE,
    "demo_s8_ignore_iou_24_epochs": [*S8_IGNORE, "--trainer.max_epochs", "24"],
    # the FCOS comparator's CPU-seconds (307) at this option's ~15 CPU-s per epoch
    "demo_s8_ignore_iou_20_epochs": [*S8_IGNORE, "--trainer.max_epochs", "20"],
    # the stride-8 map's 2x2 positions per cell in the channels (FCOS's finest level, P3); the demo now
    "demo_s8_ignore_iou_s2d_s8": [*S8_IGNORE, *S2D_S8],
    "demo_s8_ignore_iou_s2d_s8_20_epochs": [*S8_IGNORE, *S2D_S8, "--trainer.max_epochs", "20"],
    # ... at the FCOS comparator's CPU-seconds (~300): the stride-8 head costs ~17% more per epoch here
    "demo_s8_ignore_iou_s2d_s8_17_epochs": [*S8_IGNORE, *S2D_S8, "--trainer.max_epochs", "17"],
    # half the batch: twice the optimizer steps per epoch (600 training images: 75 instead of 37)
    "demo_s8_ignore_iou_s2d_s8_17_epochs_batch8": [*S8_IGNORE, *S2D_S8, "--trainer.max_epochs", "17",
                                                    "--data.batch_size", "8"],
    # the demo's LR (0.003, chosen at S=4) at the S=8 grid and FCOS's CPU-seconds
    "demo_s8_ignore_iou_20_epochs_lr005": [*S8_IGNORE, "--trainer.max_epochs", "20", "--model.lr", "0.005"],
    "demo_s8_ignore_iou_20_epochs_lr002": [*S8_IGNORE, "--trainer.max_epochs", "20", "--model.lr", "0.002"],
    # twice the box term's weight: the gap to FCOS is at the strict IoU thresholds (0.8-0.95)
    "demo_s8_ignore_iou_20_epochs_coord10": [*S8_IGNORE, "--trainer.max_epochs", "20", "--model.lambda_coord", "10"],
}  # fmt: skip
# every option pins S=4, no ignore rule and the pool head first (later values win): a run named for an option
# measures it
SYNTHETIC_RUNS = {name: ("configs/demo.yaml", [*DEMO_S4, *args]) for name, args in SYNTHETIC_OPTIONS.items()}
# bccd's Platelets are ~15 px at 320: a larger input at the feature map's own grid (S = input / 16), with
# fewer epochs so that the run's CPU-seconds stay near the FCOS comparator's (~2,000) and its cosine anneals
BCCD_INPUTS = {
    "all_predictors_ignore_iou_416": [*ASSIGNMENTS["all_predictors_ignore_iou"], "--data.input_size", "416",
                                      "--model.grid_size", "26", "--trainer.max_epochs", "32"],
}  # fmt: skip
# blood cells have no up and down: a vertical flip doubles the orientations seen (Ultralytics' flipud)
# 40 epochs: the FCOS comparator's CPU-seconds at 320 px (~1,950)
BCCD_INPUTS["all_predictors_ignore_iou_416_40_epochs"] = [*BCCD_INPUTS["all_predictors_ignore_iou_416"],
                                                           "--trainer.max_epochs", "40"]  # fmt: skip
# the stride-8 map's 2x2 positions per cell in the channels (52x52 at 416 px): Platelets are ~2 cells wide;
# 36 epochs keep the CPU-seconds near the 40-epoch pool head's
BCCD_INPUTS["all_predictors_ignore_iou_416_s2d_s8"] = [*BCCD_INPUTS["all_predictors_ignore_iou_416"],
                                                        "--model.head", "space_to_depth_s8",
                                                        "--trainer.max_epochs", "36"]  # fmt: skip
# YOLOv4's Mosaic (albumentations; each image at its own scale, four per sample) on half the samples: more
# cells and contexts per step for a 248-image training set
BCCD_INPUTS["all_predictors_ignore_iou_416_40_epochs_mosaic"] = [
    *BCCD_INPUTS["all_predictors_ignore_iou_416_40_epochs"], "--data.augment.mosaic", "0.5"]  # fmt: skip
# ... with Mosaic off for the last 10 epochs (Ultralytics' close_mosaic): the model ends on whole images
BCCD_INPUTS["all_predictors_ignore_iou_416_40_epochs_mosaic_close10"] = [
    *BCCD_INPUTS["all_predictors_ignore_iou_416_40_epochs_mosaic"], "--data.augment.close_mosaic", "10"]  # fmt: skip
BCCD_INPUTS["all_predictors_ignore_iou_416_flipud"] = [*BCCD_INPUTS["all_predictors_ignore_iou_416"],
                                                        "--data.augment.flip_vertical", "0.5"]  # fmt: skip
# bccd_lite0.yaml before it moved to 416 px: every bccd option pins it first (later values win), so a run's
# name keeps meaning what it measured
BCCD_320 = ["--data.input_size", "320", "--model.grid_size", "20", "--trainer.max_epochs", "40",
            "--data.augment.flip_vertical", "0.0", "--data.augment.mosaic", "0.0",
            "--data.augment.close_mosaic", "0"]  # fmt: skip
BCCD_OPTIONS = {  # extra overrides (ResNet-18 and tiny Darknet from scratch)
    "efficientnet_lite0": YOLOV1,
    **{f"efficientnet_lite0_{name}": args for name, args in LOSSES.items()},
    **{f"efficientnet_lite0_{name}": args for name, args in HEADS.items()},
    **{f"efficientnet_lite0_{name}": args for name, args in ASSIGNMENTS.items()},
    **{f"efficientnet_lite0_{name}": args for name, args in BCCD_INPUTS.items()},
    "resnet18": [*FROM_SCRATCH, "--model.backbone", "resnet18"],
    "darknet_tiny": [*FROM_SCRATCH, "--model.backbone", "darknet_tiny"],
}
RUNS = {name: ("configs/bccd_lite0.yaml", [*YOLOV1, *BCCD_320, *args]) for name, args in BCCD_OPTIONS.items()}
BCCD_SHIPPED = "efficientnet_lite0_all_predictors_ignore_iou_416_40_epochs_mosaic_close10"  # bccd_lite0.yaml (headline)


def map50_vs_minutes(run_dir: Path) -> list[tuple[float, float]]:
    """(minutes since the run's first event, val mAP50) per validation, from TensorBoard's wall times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    start = events.FirstEventTimestamp()
    return [(round((e.wall_time - start) / 60, 2), round(e.value, 4)) for e in events.Scalars("val/map50")]


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the legend (one line per run, beside the axes) sets the height: every run stays in the picture
    fig, ax = plt.subplots(figsize=(10, max(4.5, 0.2 * (len(table) + 2))))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more runs than the default 10 colours
    for name, row in table.items():
        minutes, map50 = zip(*row["map50_vs_minutes"]) if row["map50_vs_minutes"] else ((), ())
        ax.plot(minutes, map50, marker=".", label=f"{name} (then test mAP50 {row['map50']:.3f})")
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1, label="target 0.80")
    ax.set_xlabel("training wall-clock minutes (2-core CPU)")
    ax.set_ylabel("bccd validation mAP50 (EMA, per epoch)")  # carved split; test for the older runs
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)  # many runs: beside the axes
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the legend beside the axes is part of the picture
    plt.close(fig)


def loss_rows(table: dict, prefix: str) -> dict[str, list[dict]]:
    """The runs of one model under each loss option: {loss name: [row per seed]}, YOLOv1's loss first."""
    by_loss: dict[str, list[dict]] = {"yolov1": []}
    for label, row in table.items():
        base = label.rsplit("_seed", 1)[0]
        if base == prefix:
            by_loss["yolov1"].append(row)
        elif base.startswith(prefix + "_") and base[len(prefix) + 1 :] in LOSSES:
            by_loss.setdefault(base[len(prefix) + 1 :], []).append(row)
    return {name: by_loss[name] for name in ["yolov1", *LOSSES] if by_loss.get(name)}  # one order everywhere


GRID_OPTIONS = {  # what the grid-head plot shows: {label: (results key, run name without the seed)}
    "pool, responsible (old demo)": ("synthetic_runs", "demo_sse+ciou_bce_ce"),
    "space_to_depth": ("synthetic_runs", "demo_space_to_depth"),
    "space_to_depth_s8": ("synthetic_runs", "demo_space_to_depth_s8"),
    "all_predictors": ("synthetic_runs", "demo_all_predictors"),
    "ignore_iou 0.5": ("synthetic_runs", "demo_ignore_iou"),
    "B=1": ("synthetic_runs", "demo_one_box"),
    "all_predictors B=4": ("synthetic_runs", "demo_all_predictors_b4"),
    "all_predictors 24 epochs": ("synthetic_runs", "demo_all_predictors_24_epochs"),
    "28 epochs": ("synthetic_runs", "demo_28_epochs"),
    "256 px": ("synthetic_runs", "demo_256"),
    "256 px s2d_s8": ("synthetic_runs", "demo_256_space_to_depth_s8"),
    "all_predictors freeze_stride 8": ("synthetic_runs", "demo_all_predictors_freeze8"),
    "S=8 ignore_iou (demo before)": ("synthetic_runs", "demo_s8_ignore_iou"),
    "S=8 ignore_iou 20 epochs": ("synthetic_runs", "demo_s8_ignore_iou_20_epochs"),
    "S=8 ignore_iou 24 epochs": ("synthetic_runs", "demo_s8_ignore_iou_24_epochs"),
    "S=8 ignore_iou s2d_s8 (demo now)": ("synthetic_runs", "demo_s8_ignore_iou_s2d_s8"),
    "S=8 ignore_iou s2d_s8 20 epochs": ("synthetic_runs", "demo_s8_ignore_iou_s2d_s8_20_epochs"),
    "S=8 ignore_iou s2d_s8 17 epochs": ("synthetic_runs", "demo_s8_ignore_iou_s2d_s8_17_epochs"),
    "S=8 ignore_iou s2d_s8 17 epochs_batch 8": ("synthetic_runs", "demo_s8_ignore_iou_s2d_s8_17_epochs_batch8"),
    "S=8 ignore_iou 20 epochs_lr 0.005": ("synthetic_runs", "demo_s8_ignore_iou_20_epochs_lr005"),
    "S=8 ignore_iou 20 epochs_lr 0.002": ("synthetic_runs", "demo_s8_ignore_iou_20_epochs_lr002"),
    "S=8 ignore_iou 20 epochs_coord weight 10": ("synthetic_runs", "demo_s8_ignore_iou_20_epochs_coord10"),
    "FCOS": ("comparator_runs", "fcos_synthetic"),
}


def option_rows(results: dict, options: dict[str, tuple[str, str]]) -> dict[str, list[dict]]:
    """{label: [row per seed]} of the runs named in ``options`` that exist (seed 0 has no suffix, except
    for the comparators, whose labels always carry it)."""
    rows = {}
    for label, (key, name) in options.items():
        table = results.get(key, {})
        found = [row for run, row in table.items() if run == name or run.rsplit("_seed", 1)[0] == name]
        if found:
            rows[label] = found
    return rows


def plot_losses(panels: dict[str, dict[str, list[dict]]], path: Path, stacked: bool = False) -> None:
    """Test mAP / AP50 / AP75 per loss option: one dot per seed, a bar at the mean; a panel per dataset
    (side by side, or one above the other when ``stacked``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {"map": "mAP@[.5:.95]", "map50": "AP50", "map75": "AP75"}
    width = max(6.0, 1.2 * max(len(by_loss) for by_loss in panels.values()))  # room for every option's label
    n = len(panels)
    shape, size = ((n, 1), (width, 4 * n)) if stacked else ((1, n), (width * n, 4))
    fig, axes = plt.subplots(*shape, figsize=size, squeeze=False)
    for ax, (title, by_loss) in zip(axes.flat, panels.items()):
        for j, (key, label) in enumerate(metrics.items()):
            for i, rows in enumerate(by_loss.values()):
                x = i + (j - 1) * 0.27
                values = [row[key] for row in rows]
                mean = sum(values) / len(values)
                ax.bar(x, mean, width=0.25, color=f"C{j}", alpha=0.35, label=label if i == 0 else None)
                ax.plot([x] * len(values), values, "o", color=f"C{j}", markersize=4)
        ax.set_xticks(range(len(by_loss)), [name.replace("_", "\n") for name in by_loss], fontsize=8)
        ax.set_title(f"{title}: test, best.ckpt on validation (dots: seeds)", fontsize=9)
        ax.set_ylim(0.3, 1.12)  # room for the legend above the AP50 bars
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


BCCD_GRID_OPTIONS = {  # the bccd panel of the same plot
    "YOLOv1 loss, 320 px (old config)": ("bccd_runs", "efficientnet_lite0"),
    "sse+ciou/bce/ce": ("bccd_runs", "efficientnet_lite0_sse+ciou_bce_ce"),
    "all_predictors": ("bccd_runs", "efficientnet_lite0_all_predictors"),
    "all_predictors ignore_iou": ("bccd_runs", "efficientnet_lite0_all_predictors_ignore_iou"),
    "416 px S=26": ("bccd_runs", "efficientnet_lite0_all_predictors_ignore_iou_416"),
    "416 px S=26 flipud": ("bccd_runs", "efficientnet_lite0_all_predictors_ignore_iou_416_flipud"),
    "416 px S=26 40 epochs": ("bccd_runs", "efficientnet_lite0_all_predictors_ignore_iou_416_40_epochs"),
    "416 px S=26 s2d_s8 36 epochs": ("bccd_runs", "efficientnet_lite0_all_predictors_ignore_iou_416_s2d_s8"),
    "416 px S=26 40 epochs mosaic": ("bccd_runs", "efficientnet_lite0_all_predictors_ignore_iou_416_40_epochs_mosaic"),
    "416 px S=26 40 epochs mosaic close_mosaic 10 (config now)": (
        "bccd_runs",
        "efficientnet_lite0_all_predictors_ignore_iou_416_40_epochs_mosaic_close10",
    ),
    "FCOS 320 px": ("comparator_runs", "fcos_bccd"),
    "FCOS 416 px": ("comparator_runs", "fcos_bccd_416"),
}


def plot_grid_options() -> None:
    results = {k: entry.get("value", {}) for k, entry in json.loads(RESULTS.read_text()).items()}
    panels = {"synthetic shapes, sse+ciou/bce/ce": option_rows(results, GRID_OPTIONS),
              "bccd": option_rows(results, BCCD_GRID_OPTIONS)}  # fmt: skip
    panels = {title: rows for title, rows in panels.items() if rows}
    if panels:
        plot_losses(panels, ROOT / "benchmarks" / "grid_options.png", stacked=True)


def synthetic_data() -> Path:
    """The demo's dataset (same seed, same train / val images) plus a test split, written once."""
    from gridyolo.data.synthetic import write_synthetic_coco

    root = ROOT / "runs" / "bench" / "synthetic_data"
    if not (root / "annotations" / "instances_test.json").exists():
        from gridyolo.apps.demo import DEMO_DATA_GRID

        splits = {"train": 600, "val": 100, "test": 300}  # the generator is sequential: train, val as the demo's
        write_synthetic_coco(str(root), splits=splits, grid_size=DEMO_DATA_GRID)
    return root


LARGE_FRACTION = 0.01  # coco128_large keeps images whose every object covers >= 1% of the image


def coco128_large_data() -> Path:
    """A large-object, one-class dataset made from coco128: the images whose every (non-crowd) object covers
    at least ``LARGE_FRACTION`` of the image, all categories merged into "object" (71 classes on 56 images
    cannot be learned; where the objects are does not need the class); every 4th image (by id) is test."""
    root = ROOT / "runs" / "bench" / "coco128_large"
    if (root / "annotations" / "instances_test.json").exists():
        return root
    source = DATA / "coco128"
    coco = json.loads((source / "annotations" / "instances_train2017.json").read_text())
    images = {image["id"]: image for image in coco["images"]}
    objects: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        objects.setdefault(ann["image_id"], []).append(ann)
    keep = sorted(i for i, anns in objects.items() if all(
        a["iscrowd"] or a["bbox"][2] * a["bbox"][3] >= LARGE_FRACTION * images[i]["width"] * images[i]["height"]
        for a in anns))  # fmt: skip
    splits = {"train": [i for n, i in enumerate(keep) if n % 4 != 3], "test": keep[3::4]}
    for split, ids in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in ids:
            shutil.copyfile(source / "train2017" / images[i]["file_name"], root / split / images[i]["file_name"])
        anns = [{**a, "category_id": 1} for i in ids for a in objects[i]]
        write_json(root / "annotations" / f"instances_{split}.json", {
            "images": [images[i] for i in ids], "annotations": anns,
            "categories": [{"id": 1, "name": "object", "supercategory": "object"}]})  # fmt: skip
    return root


LARGE = ["--data.format", "coco", "--data.train_split", "train", "--data.val_split", "null",
         "--data.val_fraction", "0.15", "--data.classes", "null", "--data.input_size", "256"]  # fmt: skip
BEST_ASSIGN = [*BEST_LOSS, "--model.assign", "all_predictors"]
LARGE_RUNS = {  # custom_cpu.yaml as a user runs it on their own data (S from data check or the feature map)
    **{f"s{s}": ("configs/custom_cpu.yaml", [*LARGE, *YOLOV1, "--model.grid_size", str(s)]) for s in (4, 8, 16)},
    **{f"s{s}_best": ("configs/custom_cpu.yaml", [*LARGE, *BEST_ASSIGN, "--model.grid_size", str(s)])
       for s in (4, 8, 16)},
    "s16_best_ignore_iou": ("configs/custom_cpu.yaml",
                            [*LARGE, *BEST_ASSIGN, "--model.ignore_iou", "0.5", "--model.grid_size", "16"]),
    "s4_freeze8": ("configs/custom_cpu.yaml", [*LARGE, *YOLOV1, "--model.grid_size", "4", *FREEZE8]),
}  # fmt: skip

DATASETS = {  # name: (runs, data root, format, results key, what the key holds)
    "bccd": (RUNS, lambda: DATA / "bccd", "voc", "bccd_runs",
             "bccd trainval (15% carved for validation) -> test, CPU wall-clock budget per model"),
    "synthetic": (SYNTHETIC_RUNS, synthetic_data, "coco", "synthetic_runs",
                  "demo shapes: train -> best on val -> test (300 images), the demo config"),
    "coco128_large": (LARGE_RUNS, coco128_large_data, "coco", "coco128_large_runs",
                      "coco128 images whose objects all cover >= 1% of the image, one class: 42 train "
                      "(15% carved for validation) -> 14 test, custom_cpu.yaml at 256 px"),
}  # fmt: skip


def train_and_test(name: str, config: str, extra: list[str], data_root: Path, data_format: str, budget: str) -> dict:
    """Train one run (best.ckpt on the config's validation split), then evaluate it on test once."""
    run_dir = new_run_dir(ROOT / "runs" / "bench", f"bench_{name}")  # never an earlier run's weights
    data = ["--data.root", str(data_root), "--project", str(run_dir.parent), "--name", run_dir.name]
    cmd = [sys.executable, "-m", "gridyolo", "train", "--config", config, "--trainer.max_time", budget, *data,
           "--exist_ok", "true", *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)  # the whole training run
    weights = str(run_dir / "weights" / "best.ckpt")
    cmd = [sys.executable, "-m", "gridyolo", "eval", "--weights", weights, "--data", str(data_root),
           "--format", data_format, "--split", "test", "--json"]  # fmt: skip
    metrics = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    row = {k: metrics[k] for k in ("map", "map50", "map75", "per_class", "voc07_per_class") if k in metrics}
    best = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    row["val"] = {k: best[k] for k in ("map", "map50", "map75") if k in best}
    row["minutes"], row["epochs"] = round(best.get("train_seconds", 0) / 60, 1), best.get("epochs")
    row["cpu_seconds"] = round(cpu_seconds)
    row["run"] = str(run_dir.relative_to(ROOT))
    row["map50_vs_minutes"] = map50_vs_minutes(run_dir)
    row["train_args"] = " ".join([config, *extra])
    row["provenance"] = provenance(row["train_args"])
    return row


# the FCOS runs were measured without Mosaic (bccd_lite0.yaml has it since)
FCOS_NO_MOSAIC = ["data.augment.mosaic=0.0", "data.augment.close_mosaic=0"]
# bccd_lite0.yaml's data before 416 px
FCOS_BCCD_320 = ["data.input_size=320", "data.augment.flip_vertical=0.0", *FCOS_NO_MOSAIC]
COMPARATORS = {  # name: (dataset, config, epochs, config overrides): torchvision FCOS on the same Lite0
    # (benchmarks/fcos_comparator.py). bccd: FCOS steps ~1.5x slower than the grid (synthetic runs), so 40
    # epochs would not fit the 20-minute budget and the cosine would never anneal; 28 do at 320 px, 18 at
    # 416 px (the schedule fits the budget, as for gridyolo's runs)
    "fcos_bccd": ("bccd", "configs/bccd_lite0.yaml", 28, FCOS_BCCD_320),
    "fcos_bccd_416": (
        "bccd",
        "configs/bccd_lite0.yaml",
        18,
        ["data.input_size=416", "data.augment.flip_vertical=0.0", *FCOS_NO_MOSAIC],
    ),
    "fcos_synthetic": ("synthetic", "configs/demo.yaml", None, []),
}


def run_comparator(name: str, seed: int, minutes: float) -> dict:
    """FCOS under the protocol of the config's gridyolo runs; best weights on validation, test once."""
    dataset, config, epochs, overrides = COMPARATORS[name]
    run_dir = new_run_dir(ROOT / "runs" / "bench", f"bench_{name}_seed{seed}")
    data_root = DATASETS[dataset][1]()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fcos_comparator.py"), "--config", config, "--out", str(run_dir),
           "--minutes", str(minutes), "--seed", str(seed), "--data-root", str(data_root),
           *(["--max-epochs", str(epochs)] if epochs else []), *(f"--set={item}" for item in overrides)]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True)
    row = json.loads((run_dir / "metrics.json").read_text())
    row["run"] = str(run_dir.relative_to(ROOT))
    row["provenance"] = provenance(" ".join([config, *(f"--set={item}" for item in overrides)]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--dataset", choices=list(DATASETS), default="bccd")
    parser.add_argument("--models", nargs="+", help=f"bccd: {', '.join(RUNS)}; synthetic: {', '.join(SYNTHETIC_RUNS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (weights init, order, augmentation)")
    parser.add_argument("--comparator", choices=list(COMPARATORS), help="run torchvision FCOS instead of gridyolo")
    args = parser.parse_args()
    if args.comparator:
        row = run_comparator(args.comparator, args.seed, args.minutes)
        label = f"{args.comparator}_seed{args.seed}"
        table = {**json.loads(RESULTS.read_text()).get("comparator_runs", {}).get("value", {}), label: row}
        command = f"python benchmarks/bench_accuracy.py --comparator {args.comparator} --seed {args.seed}"
        record("comparator_runs", table, command, note="torchvision FCOS, Lite0 + FPN 64, gridyolo's protocol")
        print(label, {k: row[k] for k in ("map", "map50", "map75", "minutes", "epochs")})
        plot_grid_options()
        return
    runs, data_root, data_format, key, note = DATASETS[args.dataset]
    models = args.models or list(runs)
    unknown = [name for name in models if name not in runs]
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not among {', '.join(runs)} (--dataset {args.dataset})")
    budget = f"00:00:{int(args.minutes):02d}:{int(args.minutes % 1 * 60):02d}"
    for name in models:
        config, extra = runs[name]
        if args.seed:
            extra = [*extra, "--seed_everything", str(args.seed), "--data.seed", str(args.seed)]
        label = f"{name}_seed{args.seed}" if args.seed else name
        row = train_and_test(label, config, extra, data_root(), data_format, budget)
        print(label, row)
        # every model's latest run, kept across invocations (one model per invocation is fine)
        table = {**json.loads(RESULTS.read_text()).get(key, {}).get("value", {}), label: row}
        command = (f"python benchmarks/bench_accuracy.py --minutes {args.minutes} --dataset {args.dataset} "
                   f"--models {name} --seed {args.seed}")  # fmt: skip
        record(key, table, command, note=note)
        if args.dataset == "bccd":
            plot(table, ROOT / "benchmarks" / "bccd_map50_vs_minutes.png")
        results = {k: entry.get("value", {}) for k, entry in json.loads(RESULTS.read_text()).items()}
        panels = {"bccd": loss_rows(results.get("bccd_runs", {}), "efficientnet_lite0"),
                  "synthetic shapes": loss_rows(results.get("synthetic_runs", {}), "demo")}  # fmt: skip
        plot_losses({title: rows for title, rows in panels.items() if rows}, ROOT / "benchmarks" / "loss_options.png")
        plot_grid_options()
        if label == BCCD_SHIPPED:  # the shipped config, seed 0
            ap50 = row["voc07_per_class"]  # VOC07 11-point AP at IoU 0.5, per class
            record("bccd_map50", row["map50"], command, config=config, per_class_voc07_ap50=ap50)


if __name__ == "__main__":
    main()
