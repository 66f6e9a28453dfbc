"""The optimizer and learning-rate recipes: SGD with momentum and weight decay, warm-up, then
cosine, step or one-cycle decay, evaluated per step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import CnnlabError

SCHEDULES = ("cosine", "step", "onecycle")


def default_lr(batch_size: int) -> float:
    """0.1 for a batch of 128, scaled linearly with the batch (Goyal et al. 2017)."""
    return 0.1 * batch_size / 128


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


def make_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    schedule: str,
    total_steps: int,
    warmup_steps: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    # Parameters may ask for a fraction of the rate (``p.lr_scale``, e.g. deformable offsets): one group
    # per scale, each following the same schedule.
    groups: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault(getattr(p, "lr_scale", 1.0), []).append(p)
    optimizer = torch.optim.SGD(
        [{"params": params, "lr": lr * scale} for scale, params in groups.items()],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, total_steps, warmup_steps))
    return optimizer, scheduler
