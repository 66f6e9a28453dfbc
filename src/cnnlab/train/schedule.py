"""The optimizer a recipe names (torch.optim's SGD, Nesterov SGD, AdamW or RMSprop) and the schedule of
its learning rate, built from torch.optim.lr_scheduler's classes and stepped once per optimizer step:

* warm-up: ``LinearLR`` from 1/(w+1) of the peak up to it over w steps, or ``ConstantLR`` holding
  ``warmup_factor`` of it (ResNet-110's 0.01 before 0.1), chained to the main schedule by
  ``SequentialLR``;
* ``cosine``: ``CosineAnnealingLR`` down to 0 at the last step;
* ``step``: ``MultiStepLR``, times ``gamma`` at each of ``milestones``, fractions of the whole run
  counted from its first step, warm-up included, as the papers count iterations;
* ``exponential``: ``StepLR``, times ``gamma`` every ``decay_every`` epochs after the warm-up (the
  staircase of GoogLeNet's 4% every 8 epochs and EfficientNet's 3% every 2.4);
* ``onecycle``: ``OneCycleLR`` (its own warm-up, 30% of the run; the recipe's momentum is kept).

The moving average of the weights (``--ema-decay``) warms its decay up too (``ema_update``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim import lr_scheduler, swa_utils

from ..errors import CnnlabError
from ..models.recipe import BATCH, OPTIMIZERS
from ..runtime import fused_optimizer

SCHEDULES = ("cosine", "step", "exponential", "onecycle")


def scaled_lr(lr: float, batch_size: int, recipe_batch: int = BATCH) -> float:
    """A rate tuned at a batch of ``recipe_batch``, scaled linearly to ``batch_size`` (Goyal et al.
    2017)."""
    return lr * batch_size / recipe_batch


class Settings(Protocol):
    """What make_optimizer reads: a TrainConfig once its recipe has been applied."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    decay_norm_and_bias: bool
    schedule: str
    milestones: Sequence[float]
    gamma: float
    decay_every: float | None
    warmup_factor: float | None


def make_optimizer(
    model: nn.Module, settings: Settings, total_steps: int, warmup_steps: int, steps_per_epoch: int = 1
) -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler]:
    """torch's optimizer of the recipe over the model's parameters, and the schedule of its rate over
    ``total_steps`` steps (``steps_per_epoch`` turns ``decay_every`` epochs into steps)."""
    groups = [
        {"params": params, "lr": settings.lr * scale, "weight_decay": settings.weight_decay * decays}
        for (scale, decays), params in _parameter_groups(model, settings.decay_norm_and_bias).items()
    ]
    kind, lr, momentum = settings.optimizer, settings.lr, settings.momentum
    first = next(model.parameters(), None)  # None: torch's optimizer says the list is empty
    fused = None if first is None else fused_optimizer(first.device)
    if kind in ("sgd", "nesterov"):
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=momentum, nesterov=kind == "nesterov", fused=fused
        )
    elif kind == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), fused=fused)
    elif kind == "rmsprop":  # the EfficientNet paper's: decay 0.9, momentum 0.9, epsilon 1e-3
        optimizer = torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-3, momentum=momentum)
    else:
        raise CnnlabError(f"unknown optimizer {kind!r}: use one of {', '.join(OPTIMIZERS)}")
    return optimizer, make_scheduler(optimizer, settings, total_steps, warmup_steps, steps_per_epoch)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    settings: Settings,
    total_steps: int,
    warmup_steps: int,
    steps_per_epoch: int = 1,
) -> lr_scheduler.LRScheduler:
    """The warm-up, then the main schedule, as torch's schedulers (see the module's docstring)."""
    if settings.schedule not in SCHEDULES:
        raise CnnlabError(f"unknown schedule {settings.schedule!r}: use one of {', '.join(SCHEDULES)}")
    total_steps = max(1, total_steps)
    if settings.schedule == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]  # deformable offsets keep their share
        return lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=total_steps, cycle_momentum=False)
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    if warmup_steps == 0:
        return _main_schedule(optimizer, settings, total_steps, 0, steps_per_epoch)
    if settings.warmup_factor is None:
        warmup: lr_scheduler.LRScheduler = lr_scheduler.LinearLR(
            optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps
        )
    else:
        warmup = lr_scheduler.ConstantLR(optimizer, settings.warmup_factor, total_iters=warmup_steps)
    main = _main_schedule(optimizer, settings, total_steps, warmup_steps, steps_per_epoch)
    # At the milestone SequentialLR starts the main schedule at its step 0, from the peak rate.
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def _main_schedule(
    optimizer: torch.optim.Optimizer,
    settings: Settings,
    total_steps: int,
    warmup_steps: int,
    steps_per_epoch: int,
) -> lr_scheduler.LRScheduler:
    """The schedule after the warm-up; its steps count from the warm-up's end."""
    if settings.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps)
    if settings.schedule == "step":
        # Fractions of the whole run, never before its first step; one passed during the warm-up
        # applies when the warm-up ends.
        milestones = [max(0, max(1, round(f * total_steps)) - warmup_steps) for f in settings.milestones]
        return lr_scheduler.MultiStepLR(optimizer, milestones, gamma=settings.gamma)
    if settings.decay_every is None:
        raise CnnlabError("--schedule exponential needs --decay-every (epochs between decays)")
    step_size = max(1, round(settings.decay_every * steps_per_epoch))
    return lr_scheduler.StepLR(optimizer, step_size, gamma=settings.gamma)


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """``AveragedModel``'s ``multi_avg_fn``: torch's exponential moving average, its decay warmed up as
    TensorFlow's ``ExponentialMovingAverage(num_updates=global_step)`` warms it (the EfficientNet
    reference's average): ``min(decay, (1 + s) / (10 + s))`` after the s-th optimizer step. The first
    step's weights are copied, where TensorFlow blends them with the initial ones. A short run thus
    forgets its first weights instead of keeping a share ``decay ** steps`` of them."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        step = int(updates) + 1  # torch counts the averages so far, the first step's copy included
        swa_utils.get_ema_multi_avg_fn(min(decay, (1 + step) / (10 + step)))(averaged, current, updates)

    return update


def load_scheduler_state(scheduler: lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    """Put back a checkpoint's schedule. Call it before the optimizer's ``load_state_dict``, and
    ``restore_rates`` after. A checkpoint of cnnlab before torch's schedulers holds a LambdaLR's
    state; its steps are replayed on the fresh schedule instead, whose rates then hold."""
    if "lr_lambdas" not in state:
        scheduler.load_state_dict(state)
        return
    with warnings.catch_warnings():  # steps without optimizer steps, on purpose
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(int(state["last_epoch"])):
            scheduler.step()


def restore_rates(scheduler: lr_scheduler.LRScheduler, optimizer: torch.optim.Optimizer) -> None:
    """Each parameter group's rate, as the schedule last set it (the same value the optimizer's
    state holds, except after a replayed LambdaLR)."""
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = lr


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
