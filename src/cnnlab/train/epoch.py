"""One pass over the training set: SGD steps for a parametric model, indexing for k-NN."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from ..data.augment import EpochPlan, Normalize, batch_indices, batches, prefetched
from ..data.base import Dataset
from ..data.mix import MixPlan, mixed_batches
from ..errors import CnnlabError
from ..loss import AUX_WEIGHT, Mixed, classification_loss
from ..runtime import autocast
from .distributed import SINGLE_PROCESS, World, all_sum
from .logger import StepLog
from .progress import TrainProgress

T = TypeVar("T")


class Stopwatch:
    """Adds up the time an iterator takes to hand out its items."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, items: Iterable[T]) -> Iterator[T]:
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item


@dataclass
class Optimization:
    """What a parametric model trains with; absent for k-NN."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    lr: float
    clip_grad_norm: float | None = None
    ema: torch.optim.swa_utils.AveragedModel | None = None  # updated after every step
    aux_weight: float = AUX_WEIGHT  # each auxiliary classifier's share of the loss


def train_epoch(
    model: nn.Module,
    data: Dataset,
    plan: EpochPlan,
    normalize: Normalize,
    opt: Optimization,
    batch_size: int,
    label_smoothing: float,
    device: torch.device,
    dtype: torch.dtype | None,
    progress: TrainProgress,
    epoch: int,
    memory_format: torch.memory_format = torch.contiguous_format,
    world: World = SINGLE_PROCESS,
    mix: MixPlan | None = None,
    log: StepLog | None = None,
) -> tuple[float, float, int, float]:
    """One pass of SGD over the training set; returns (mean loss, accuracy, images seen, seconds spent
    waiting for batches: gathering, augmenting and normalizing them). Data-parallel, each process
    trains on its slice of every global batch and the figures are those of the global batches.
    With ``mix``, MixUp or CutMix batches, and the accuracy counts the label with the larger share."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    data_clock = Stopwatch()
    prepared = _prepared(data, plan, mix, normalize, batch_size, device, memory_format, world)
    for step, (x, y, mixed) in enumerate(data_clock.timed(prepared)):
        with autocast(device, dtype):
            loss, logits = classification_loss(model(x), y, label_smoothing, opt.aux_weight, mixed)
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        if opt.clip_grad_norm is not None:
            opt.scaler.unscale_(opt.optimizer)  # the norm of the true gradients, not of scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip_grad_norm)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        lr = opt.optimizer.param_groups[0]["lr"]  # the rate this step took
        opt.scheduler.step()
        if opt.ema is not None:
            opt.ema.update_parameters(model)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise CnnlabError(
                f"training diverged: loss {loss_value} at epoch {epoch}, step {step + 1}; lower the learning "
                f"rate (--lr, now {opt.lr:g}); the last good checkpoint is kept"
            )
        if log is not None:
            log.step(epoch, step + 1, loss_value, lr)
        loss_sum += loss_value * len(y)
        target = y if mixed is None else torch.where(mixed[1] >= 0.5, y, mixed[0])
        correct += (logits.argmax(1) == target).sum().item()
        seen += len(y)
        progress.advance(len(y) * world.size, loss_value)
    loss_sum, correct, seen = all_sum([loss_sum, correct, seen], world, device)
    return loss_sum / seen, correct / seen, int(seen), data_clock.seconds


def _prepared(
    data: Dataset,
    plan: EpochPlan,
    mix: MixPlan | None,
    normalize: Normalize,
    batch_size: int,
    device: torch.device,
    memory_format: torch.memory_format,
    world: World,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, Mixed | None]]:
    """The epoch's batches on ``device``, normalized, gathered by a background thread: (images,
    labels, MixUp's or CutMix's (partners' labels, own share) or None)."""
    images, labels = data.train_images, data.train_labels
    local: Iterator[tuple[torch.Tensor, ...]] = (
        mixed_batches(images, labels, batch_size, plan, mix, rank=world.rank, ranks=world.size)
        if mix is not None
        else batches(images, labels, batch_size, plan, drop_last=True, rank=world.rank, ranks=world.size)
    )
    for x, y, *rest in prefetched(local):
        x = normalize(x.to(device, non_blocking=True)).contiguous(memory_format=memory_format)
        mixed = tuple(t.to(device, non_blocking=True) for t in rest) if rest else None
        yield x, y.to(device, non_blocking=True), mixed  # type: ignore[misc]


def index_epoch(
    model: nn.Module,
    data: Dataset,
    normalize: Normalize,
    batch_size: int,
    device: torch.device,
    progress: TrainProgress,
    subset: torch.Tensor | None = None,
) -> tuple[float, float, int, float]:
    """Non-parametric models (k-NN) learn by storing the normalized training set (the ``subset`` of it
    with a validation split); they have no loss."""
    order = torch.arange(len(data.train_labels)) if subset is None else subset
    for idx in batch_indices(order, batch_size):
        model.add(normalize(data.train_images[idx].to(device)), data.train_labels[idx].to(device))
        progress.advance(len(idx), None)
    return math.nan, math.nan, len(order), 0.0
