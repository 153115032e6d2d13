"""``gridyolo explain``: what the grid sees, one PNG per view.

Views (all on the model input, i.e. the letterboxed / stretched image the grid is defined on):
``grid.png`` the S×S cells; ``confidence.png`` per-cell max box confidence; ``classes.png`` per-cell
argmax class and its probability; ``boxes.png`` every cell's B boxes before NMS, faded by confidence;
``responsible.png`` (with ``--labels``) the cell responsible for each ground-truth object;
``features_<layer>.png`` the first channels of chosen layers' feature maps, tiled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: no global backend, nothing set at import
from matplotlib.patches import Rectangle

from gridyolo.apps.drawing import class_colour
from gridyolo.core.grid import GridPrediction, activate, assign_cells, cell_boxes
from gridyolo.core.letterbox import boxes_to_input
from gridyolo.data.images import load_image
from gridyolo.data.yolo_txt import read_labels
from gridyolo.deploy.predictor import load_predictor
from gridyolo.errors import GridyoloError
from gridyolo.weights_kind import weights_format


def default_layers(model: torch.nn.Module) -> list[str]:
    """Three backbone layers spread over its depth (early edges, middle parts, late objects)."""
    names = [n for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.Conv2d)]
    picks = [names[len(names) // 8], names[len(names) // 2], names[-1]] if names else []
    return [f"backbone.{n}" for n in dict.fromkeys(picks)]


def _figure(image: np.ndarray, title: str):
    fig = Figure(figsize=(6, 6 * image.shape[0] / image.shape[1]), dpi=110)
    ax = fig.subplots()
    ax.imshow(image)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return fig, ax


def _draw_grid(ax, size: int, s: int) -> None:
    for k in range(1, s):
        ax.axhline(k * size / s, color="white", lw=0.8, alpha=0.8)
        ax.axvline(k * size / s, color="white", lw=0.8, alpha=0.8)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path)
    return str(path)


def tile_features(features: torch.Tensor, max_channels: int = 32) -> np.ndarray:
    """``[C, h, w]`` -> one 2-D mosaic of the first ``max_channels`` maps, each min-max scaled."""
    maps = features[:max_channels].float()
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    maps = ((maps - lo) / (hi - lo).clamp_min(1e-6)).numpy()
    cols = int(np.ceil(np.sqrt(len(maps))))
    rows = int(np.ceil(len(maps) / cols))
    h, w = maps.shape[1:]
    mosaic = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1), dtype=np.float32)
    for i, m in enumerate(maps):
        r, c = divmod(i, cols)
        mosaic[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = m
    return mosaic


@torch.no_grad()
def explain(
    weights: str, image_path: str, out: str, labels: str | None = None, layers: list[str] | None = None
) -> list[str]:
    """Write the explain figures for one image; returns the written paths."""
    if weights_format(weights) != "checkpoint":
        raise GridyoloError(f"{weights}: explain needs a training checkpoint, not an export (it shows feature maps)")
    predictor = load_predictor(weights, "torch")
    model, info = predictor.model, predictor.info
    image = load_image(image_path)
    names = list(info["class_names"])
    s, b, size = info["grid_size"], info["num_boxes"], model.input_size
    modules = dict(model.detector.named_modules())
    layers = layers or default_layers(model.detector)
    unknown = [n for n in layers if n not in modules]
    if unknown:
        raise GridyoloError(f"unknown layer(s) {', '.join(unknown)}; e.g. {', '.join(default_layers(model.detector))}")
    if labels:  # read (and refused) before the first figure is written
        if not os.path.isfile(labels):
            raise GridyoloError(f"{labels}: labels file not found")
        gt_boxes, gt_labels = read_labels(labels, image.shape[1], image.shape[0], len(names))
    captured: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o)) for n in layers]
    batch, params, _ = model.preprocess([torch.from_numpy(image).permute(2, 0, 1)])
    raw = model.predict_raw(batch)
    for hook in hooks:
        hook.remove()
    pred = activate(raw.float(), b)
    shown = batch[0].permute(1, 2, 0).numpy()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = _figure(shown, f"model input {size}×{size} and its {s}×{s} grid")
    _draw_grid(ax, size, s)
    written = [_save(fig, out_dir / "grid.png"), _confidence_view(shown, pred, size, out_dir)]
    written += [_classes_view(shown, pred, size, names, out_dir), _boxes_view(shown, pred, size, b, out_dir)]
    if labels:
        gt_in = boxes_to_input(gt_boxes, params[0].numpy())
        written.append(_responsible_view(shown, gt_in, gt_labels, size, s, names, out_dir))
    return written + [_feature_view(name, captured[name][0], out_dir) for name in layers]


def _confidence_view(shown: np.ndarray, pred: GridPrediction, size: int, out_dir: Path) -> str:
    s = pred.conf.shape[1]
    conf = pred.conf[0].max(dim=-1).values.numpy()  # [S, S]
    fig, ax = _figure(shown, "per-cell confidence (max over the B boxes)")
    heat = ax.imshow(conf, extent=(0, size, size, 0), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    _draw_grid(ax, size, s)
    for i in range(s):
        for j in range(s):
            ax.text((j + 0.5) * size / s, (i + 0.5) * size / s, f"{conf[i, j]:.2f}", color="white", ha="center",
                    va="center", fontsize=max(5, 40 // s))  # fmt: skip
    fig.colorbar(heat, ax=ax, fraction=0.046)
    return _save(fig, out_dir / "confidence.png")


def _classes_view(shown: np.ndarray, pred: GridPrediction, size: int, names: list[str], out_dir: Path) -> str:
    s = pred.conf.shape[1]
    prob, cls = pred.class_prob[0].max(dim=-1)
    colours = np.array([class_colour(int(c)) for c in cls.flatten()], dtype=np.float32).reshape(s, s, 3) / 255
    fig, ax = _figure(shown, "per-cell class (argmax) and its probability")
    ax.imshow(np.concatenate([colours, prob.numpy()[..., None] * 0.7], axis=-1), extent=(0, size, size, 0))
    _draw_grid(ax, size, s)
    for i in range(s):
        for j in range(s):
            ax.text((j + 0.5) * size / s, (i + 0.5) * size / s, f"{names[int(cls[i, j])]}\n{float(prob[i, j]):.2f}",
                    color="black", ha="center", va="center", fontsize=max(4, 32 // s))  # fmt: skip
    return _save(fig, out_dir / "classes.png")


def _boxes_view(shown: np.ndarray, pred: GridPrediction, size: int, b: int, out_dir: Path) -> str:
    s = pred.conf.shape[1]
    cls = pred.class_prob[0].argmax(dim=-1)
    boxes = (cell_boxes(pred.xy, pred.sqrt_wh)[0] * size).reshape(-1, 4).numpy()
    confs = pred.conf[0].reshape(-1).numpy()
    fig, ax = _figure(shown, f"all {s}×{s}×{b} boxes before NMS (opacity = confidence)")
    _draw_grid(ax, size, s)
    for (x1, y1, x2, y2), c, k in zip(boxes, confs, range(len(confs))):
        colour = np.array(class_colour(int(cls.flatten()[k // b]))) / 255
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ec=colour, alpha=float(c) ** 0.5))
    return _save(fig, out_dir / "boxes.png")


def _responsible_view(shown: np.ndarray, gt_in: np.ndarray, gt_labels: np.ndarray, size: int, s: int,
                      names: list[str], out_dir: Path) -> str:  # fmt: skip
    """Ground truth (input pixels) and the cell that owns each object (``grid.assign_cells``, the loss's own)."""
    t_boxes = torch.from_numpy(gt_in / size).float()
    cells = assign_cells(t_boxes, torch.from_numpy(gt_labels), torch.zeros(len(gt_labels), dtype=torch.long), s)
    fig, ax = _figure(shown, "ground truth and the cell responsible for each object")
    _draw_grid(ax, size, s)
    for row, col, box, label in zip(cells.row.tolist(), cells.col.tolist(), cells.box.tolist(), cells.label.tolist()):
        colour = np.array(class_colour(int(label))) / 255
        ax.add_patch(Rectangle((col * size / s, row * size / s), size / s, size / s, color=colour, alpha=0.35))
        x1, y1, x2, y2 = (v * size for v in box)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec=colour))
        ax.plot((x1 + x2) / 2, (y1 + y2) / 2, "o", color=colour)
        ax.text(x1, y1 - 2, names[int(label)], color="white", fontsize=8, bbox={"facecolor": colour, "pad": 1, "lw": 0})
    return _save(fig, out_dir / "responsible.png")


def _feature_view(name: str, features: torch.Tensor, out_dir: Path) -> str:
    fig = Figure(figsize=(7, 7), dpi=110)
    ax = fig.subplots()
    ax.imshow(tile_features(features), cmap="viridis")
    ax.set_title(f"{name}: {min(32, features.shape[0])} of {features.shape[0]} channels, "
                 f"{features.shape[1]}×{features.shape[2]}", fontsize=9)  # fmt: skip
    ax.set_axis_off()
    return _save(fig, out_dir / f"features_{name.replace('.', '_')}.png")
