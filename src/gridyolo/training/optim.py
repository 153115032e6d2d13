"""Optimizer groups and the learning-rate schedule (warm-up, then cosine or multistep)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from gridyolo.errors import GridyoloError

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module, weight_decay: float, backbone_lr_factor: float) -> list[dict]:
    """Four groups: {backbone, head} × {decayed weights, norm weights and biases (no decay)}.

    Each group carries ``lr_factor`` (``backbone_lr_factor`` for reused layers, 1 for the new head) and
    ``is_backbone``; the schedule multiplies the base LR by it.
    """
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(b, d): [] for b in (True, False) for d in (True, False)}
    for name, param in model.named_parameters():
        is_backbone = name.startswith("backbone.")
        decayed = param.ndim > 1 and id(param) not in norm_params
        groups[(is_backbone, decayed)].append(param)
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decayed else 0.0,
            "lr_factor": backbone_lr_factor if is_backbone else 1.0,
            "is_backbone": is_backbone,
        }
        for (is_backbone, decayed), params in groups.items()
        if params
    ]


def build_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float, backbone_lr_factor: float
) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum, as YOLOv1, or AdamW."""
    groups = parameter_groups(model, weight_decay, backbone_lr_factor)
    for group in groups:
        group["lr"] = lr * group["lr_factor"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise GridyoloError(f"unknown optimizer '{name}' (choose sgd or adamw)")


def lr_lambda(
    schedule: str,
    total_steps: int,
    warmup_steps: int,
    min_lr_factor: float = 0.05,
    milestones: tuple[float, ...] = (0.6, 0.85),
    gamma: float = 0.1,
    frozen_steps: int = 0,
    is_backbone: bool = False,
) -> Callable[[int], float]:
    """LR multiplier per optimizer step: linear warm-up from 0.1 to 1 over ``warmup_steps``, then
    ``cosine`` down to ``min_lr_factor`` or ``multistep`` (×``gamma`` at each fraction in ``milestones``
    of the training). Backbone groups get 0 while the backbone is frozen (``frozen_steps``)."""
    if schedule not in ("cosine", "multistep"):
        raise GridyoloError(f"unknown schedule '{schedule}' (choose cosine or multistep)")
    total_steps = max(total_steps, 1)

    def factor(step: int) -> float:
        if is_backbone and step < frozen_steps:
            return 0.0
        if step < warmup_steps:
            return 0.1 + 0.9 * step / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        if schedule == "cosine":
            return min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        passed = sum(step >= m * total_steps for m in milestones)
        return gamma**passed

    return factor
