"""The optimizer a recipe names (torch.optim's SGD, Nesterov SGD, AdamW or RMSprop) and the
learning-rate schedule: warm-up, then cosine, step or one-cycle decay, evaluated per step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from ..errors import CnnlabError
from ..models.recipe import OPTIMIZERS

SCHEDULES = ("cosine", "step", "onecycle")


def scaled_lr(lr: float, batch_size: int) -> float:
    """A rate tuned at a batch of 128, scaled linearly with the batch (Goyal et al. 2017)."""
    return lr * batch_size / 128


def lr_factor(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at each step."""
    if schedule not in SCHEDULES:
        raise CnnlabError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    total_steps = max(1, total_steps)
    if schedule == "onecycle":  # its own warm-up: up for 30% of the run, then cosine down to ~0
        warmup_steps = max(1, round(0.3 * total_steps))
    warmup_steps = min(warmup_steps, total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "step":  # the ResNet paper's divisions by 10, at half and three quarters
            return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Settings(Protocol):
    """What make_optimizer reads: a TrainConfig once its recipe has been applied."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    decay_norm_and_bias: bool
    schedule: str


def make_optimizer(
    model: nn.Module, settings: Settings, total_steps: int, warmup_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """torch's optimizer of the recipe over the model's parameters, and the schedule of its rate."""
    groups = [
        {"params": params, "lr": settings.lr * scale, "weight_decay": settings.weight_decay * decays}
        for (scale, decays), params in _parameter_groups(model, settings.decay_norm_and_bias).items()
    ]
    kind, lr, momentum = settings.optimizer, settings.lr, settings.momentum
    if kind in ("sgd", "nesterov"):
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=momentum, nesterov=kind == "nesterov"
        )
    elif kind == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    elif kind == "rmsprop":  # the EfficientNet paper's: decay 0.9, momentum 0.9, epsilon 1e-3
        optimizer = torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-3, momentum=momentum)
    else:
        raise CnnlabError(f"unknown optimizer {kind!r}: use one of {', '.join(OPTIMIZERS)}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(settings.schedule, total_steps, warmup_steps)
    )
    return optimizer, scheduler


def _parameter_groups(
    model: nn.Module, decay_norm_and_bias: bool
) -> dict[tuple[float, bool], list[nn.Parameter]]:
    """Parameters grouped by their share of the rate (``p.lr_scale``, e.g. deformable offsets train
    slower) and by whether weight decay applies: not to the 1-D ones (BatchNorm's scale and shift,
    every bias) when ``decay_norm_and_bias`` is off, as the recipes of the later papers have it."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        decays = decay_norm_and_bias or p.dim() > 1
        groups.setdefault((getattr(p, "lr_scale", 1.0), decays), []).append(p)
    return groups
