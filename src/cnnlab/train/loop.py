"""The training loop: ``fit(TrainConfig())`` trains a registered model on a dataset and writes a run
directory. Everything is checked before the run directory is created, so a bad name, path or input
size leaves nothing behind."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import data as datasets
from .. import rundir
from ..data.augment import EpochPlan, Normalize, batches, plan_epoch
from ..data.base import Dataset
from ..errors import CnnlabError, InputSizeError, RunDirError
from ..evaluate import evaluate
from ..loss import classification_loss
from ..models import check_input_size, create_model
from ..runconfig import DataInfo, RunConfig
from ..runtime import autocast, channels_last_default, precision_name, resolve_device, resolve_precision
from . import finetune
from .distributed import (
    SINGLE_PROCESS,
    World,
    all_sum,
    convert_sync_batchnorm,
    local_batch,
    setup,
    shard,
    teardown,
)
from .progress import TrainProgress
from .schedule import default_lr, make_optimizer

T = TypeVar("T")
DEFAULT_MODEL = "resnet20"


@dataclass
class TrainConfig:
    """A training run. The defaults train a CIFAR-style ResNet-20 on the embedded mnist5k digits."""

    model: str | None = None  # None: the init run's model, or DEFAULT_MODEL
    data: str = "mnist5k"
    data_root: str | None = None
    epochs: int = 12
    batch_size: int = 128
    lr: float | None = None  # None: 0.1 x batch_size / 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1  # mnist5k, 12 epochs: 98.7% over 3 seeds, 98.2% without
    padding: int | None = None  # random-crop padding; None: an eighth of the side (0 for linear)
    seed: int = 0
    out: str | None = None
    precision: str = "auto"
    device: str = "auto"
    channels_last: bool | None = None  # None: where it is faster (runtime.channels_last_default)
    sync_bn: bool = False  # BatchNorm over the global batch when data-parallel (distributed.py)
    image_size: int | None = None  # resize every image to this side
    download: bool = True
    strict: bool = False  # an unreadable image in an image folder fails the run instead of being skipped
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a run directory whose weights start the training (finetune.py)

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            raise CnnlabError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise CnnlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")


def default_run_dir(model: str, data: str) -> Path:
    return Path("runs") / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_input(model: nn.Module, name: str, input_size: tuple[int, int, int], device: torch.device) -> None:
    """Fail early, in one line, when the images cannot go through the model."""
    c, h, w = input_size
    check_input_size(
        model,
        name,
        input_size,
        got="the data has",
        hint="choose a model for small images (e.g. resnet20) or resize the images (--image-size)",
    )
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, c, h, w, device=device))
    except RuntimeError as e:
        raise InputSizeError(f"{name} cannot take {c}x{h}x{w} inputs: {str(e).splitlines()[0]}") from None
    finally:
        model.train()


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
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    lr: float


def train_epoch(
    model: nn.Module,
    data: Dataset,
    plan: EpochPlan,
    normalize: Normalize,
    opt: Optimization,
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype | None,
    progress: TrainProgress,
    epoch: int,
    memory_format: torch.memory_format = torch.contiguous_format,
    world: World = SINGLE_PROCESS,
) -> tuple[float, float, int, float]:
    """One pass of SGD over the training set; returns (mean loss, accuracy, images seen, seconds spent
    waiting for batches: gathering, augmenting and normalizing them). Data-parallel, each process
    trains on its slice of every global batch and the figures are those of the global batches."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    data_clock = Stopwatch()
    prepared = (
        (
            normalize(shard(x, world).to(device, non_blocking=True)).contiguous(memory_format=memory_format),
            shard(y, world).to(device, non_blocking=True),
        )
        for x, y in batches(data.train_images, data.train_labels, config.batch_size, plan, drop_last=True)
    )
    for step, (x, y) in enumerate(data_clock.timed(prepared)):
        with autocast(device, dtype):
            loss, logits = classification_loss(model(x), y, config.label_smoothing)
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise CnnlabError(
                f"training diverged: loss {loss_value} at epoch {epoch}, step {step + 1}; lower the learning "
                f"rate (--lr, now {opt.lr:g}); the last good checkpoint is kept"
            )
        loss_sum += loss_value * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        progress.advance(len(y) * world.size, loss_value)
    loss_sum, correct, seen = all_sum([loss_sum, correct, seen], world, device)
    return loss_sum / seen, correct / seen, int(seen), data_clock.seconds


def index_epoch(
    model: nn.Module,
    data: Dataset,
    normalize: Normalize,
    batch_size: int,
    device: torch.device,
    progress: TrainProgress,
) -> tuple[float, float, int, float]:
    """Non-parametric models (k-NN) learn by storing the normalized training set; they have no loss."""
    for x, y in batches(data.train_images, data.train_labels, batch_size):
        model.add(normalize(x.to(device)), y.to(device))
        progress.advance(len(y), None)
    return math.nan, math.nan, len(data.train_labels), 0.0


def resume(run_dir: str | os.PathLike[str], live: bool | None = None, quiet: bool = False) -> dict[str, Any]:
    """Continue an interrupted run from its last checkpoint, with the settings of its config.json.

    The data order and augmentation of each epoch are a function of (seed, epoch), and the checkpoint
    holds the model, optimizer, scheduler, scaler and random state after its epoch, so on the CPU in
    fp32 the resumed run ends with the very weights of an uninterrupted one.
    """
    run = Path(run_dir)
    saved = rundir.read_config(run)
    if (run / rundir.RESULT).exists():
        raise RunDirError(f"{run} has finished training already; nothing to resume")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.train.items() if k in fields})
    config.out = str(run)
    return fit(config, live=live, quiet=quiet, resuming=True)


def fit(
    config: TrainConfig, live: bool | None = None, quiet: bool = False, resuming: bool = False
) -> dict[str, Any]:
    """Train as ``config`` says, write the run directory, and return ``result.json``'s content.
    ``resuming``: the run directory exists; continue from its checkpoint (see ``resume``)."""
    config.check()
    if config.init and not resuming:  # a resumed run has its init's architecture in its config already
        # Absolute, so that the config.json of the run names it whatever the directory it is read from.
        config.init = str(Path(config.init).resolve())
        config.model, config.model_kwargs = finetune.init_architecture(
            config.init, config.model, config.model_kwargs
        )
    config.model = config.model or DEFAULT_MODEL
    world, device_name = setup(config.device)
    try:
        return _fit(config, live, quiet or not world.main, resuming, world, device_name)
    except dist.DistBackendError as e:  # a peer died or hung: say so in one line, do not hang
        raise CnnlabError(
            f"process {world.rank} of {world.size} lost its peers ({str(e).splitlines()[0][:200]}); "
            f"continue with --resume {config.out}"
        ) from None
    finally:
        teardown(world)


def _fit(
    config: TrainConfig, live: bool | None, quiet: bool, resuming: bool, world: World, device_name: str
) -> dict[str, Any]:
    local_batch(config.batch_size, world)
    device = resolve_device(device_name)
    dtype = resolve_precision(config.precision, device)
    data = datasets.load(
        config.data,
        root=config.data_root,
        download=config.download,
        image_size=config.image_size,
        strict=config.strict,
    )
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=data.num_classes, in_chans=data.in_chans, **config.model_kwargs
    )
    channels_last = (
        config.channels_last if config.channels_last is not None else channels_last_default(device)
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    input_size = (data.in_chans, *data.image_size)
    check_input(model, config.model, input_size, device)
    run_dir = Path(config.out) if config.out else default_run_dir(config.model, data.name)
    if not resuming:
        rundir.check_new_run_dir(run_dir)
    checkpoint = run_dir / rundir.CHECKPOINT
    init: dict[str, Any] | None = None
    if config.init and not (resuming and checkpoint.exists()):  # a checkpoint replaces the weights
        # The images are normalized with the new data's own mean and std, as any training: the first
        # steps adapt the copied layers (BatchNorm's statistics among them) to them.
        init = finetune.init_from_run(model, config.init, config.model_kwargs)
    if world.distributed:
        if config.sync_bn:
            model = convert_sync_batchnorm(model, device)
        dist.barrier()  # every process has checked the run directory before rank 0 creates it

    nonparametric = getattr(model, "is_nonparametric", False)
    epochs = 1 if nonparametric else config.epochs  # storing the training set twice would change nothing
    lr = config.lr if config.lr is not None else default_lr(config.batch_size)
    # Random crops teach translation invariance; a model without it (one weight per pixel) only loses.
    crops = getattr(model, "translation_invariant", True)
    padding = config.padding if config.padding is not None else max(1, data.image_size[0] // 8) * crops
    steps_per_epoch = max(1, len(data.train_labels) // config.batch_size)
    opt = None
    if not nonparametric:
        optimizer, scheduler = make_optimizer(
            model,
            lr,
            config.momentum,
            config.weight_decay,
            config.schedule,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        )
        opt = Optimization(
            optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16), lr
        )
    normalize = Normalize(data.mean, data.std).to(device)
    params = sum(p.numel() for p in model.parameters())

    rows: list[dict[str, float]] = []
    if resuming and checkpoint.exists():  # killed before its first checkpoint: start over
        state = rundir.load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        if opt is not None:
            opt.optimizer.load_state_dict(state["optimizer"])
            opt.scheduler.load_state_dict(state["scheduler"])
            opt.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        rows = state["metrics"]
        init = state.get("init")  # what the interrupted run took from its init run, for result.json
    # Gradients are averaged across the processes; the unwrapped model is what is evaluated and saved.
    trained = (
        DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world.distributed
        else model
    )

    writes = world.main  # only rank 0 touches the run directory
    if writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(run_dir, RunConfig(
            model=config.model, model_kwargs=config.model_kwargs, num_classes=data.num_classes,
            in_chans=data.in_chans, params=params,
            data=DataInfo(name=data.name, source=str(config.data), classes=data.classes, mean=list(data.mean),
                          std=list(data.std), input_size=list(input_size), hflip=data.hflip,
                          train_size=len(data.train_labels), test_size=len(data.test_labels)),
            train={**asdict(config), "epochs": epochs, "lr": lr, "padding": padding},
            device=str(device), precision=precision_name(dtype), channels_last=channels_last,
            torch=torch.__version__,
        ))  # fmt: skip

    # Seconds of the epochs before an interruption count towards the training time.
    started = time.perf_counter() - sum(r["seconds"] for r in rows)
    with TrainProgress(epochs, live=live, quiet=quiet) as progress:
        recipe = "indexing the training set" if opt is None else f"lr {lr:g}, batch {config.batch_size}"
        progress.print(
            f"training {config.model} ({params:,} parameters) on {data.name}: {len(data.train_labels):,} "
            f"training and {len(data.test_labels):,} test images of {'x'.join(map(str, input_size))}, "
            f"{data.num_classes} classes; {device}, {precision_name(dtype)}, {recipe}; writing {run_dir}"
        )
        if init:
            progress.print(finetune.describe(init))
        if rows:
            progress.print(f"resuming after epoch {len(rows)} of {epochs}")
        for epoch in range(len(rows) + 1, epochs + 1):
            progress.start_epoch(
                epoch, len(data.train_labels) if opt is None else steps_per_epoch * config.batch_size
            )
            epoch_start = time.perf_counter()
            if opt is None:
                train_loss, train_acc, seen, data_seconds = index_epoch(
                    model, data, normalize, config.batch_size, device, progress
                )
            else:
                plan = plan_epoch(len(data.train_labels), config.seed, epoch, padding, data.hflip)
                train_loss, train_acc, seen, data_seconds = train_epoch(
                    trained,
                    data,
                    plan,
                    normalize,
                    opt,
                    config,
                    device,
                    dtype,
                    progress,
                    epoch,
                    memory_format,
                    world,
                )
            train_seconds = time.perf_counter() - epoch_start
            # Evaluated in fp32 whatever the training precision, so `cnnlab eval` reproduces it exactly.
            test = evaluate(
                model, data.test_images, data.test_labels, normalize, device, memory_format=memory_format
            )
            rows.append({
                "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test["loss"],
                "test_acc": test["top1"], "test_top5": test["top5"],
                "lr": opt.optimizer.param_groups[0]["lr"] if opt else 0.0,
                "seconds": time.perf_counter() - epoch_start, "train_seconds": train_seconds,
                "images_per_s": seen / train_seconds, "data_fraction": data_seconds / train_seconds,
            })  # fmt: skip
            if writes:
                rundir.write_metrics(run_dir / rundir.METRICS, rows)
                rundir.save_checkpoint({
                    "format_version": rundir.FORMAT_VERSION, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": opt.optimizer.state_dict() if opt else {},
                    "scheduler": opt.scheduler.state_dict() if opt else {},
                    "scaler": opt.scaler.state_dict() if opt else {}, "rng": torch.get_rng_state(),
                    "metrics": rows, **({"init": init} if init else {}),
                }, run_dir / rundir.CHECKPOINT)  # fmt: skip
            progress.end_epoch(rows[-1])

        train_time = time.perf_counter() - started
        last = rows[-1]
        result = {
            "model": config.model, "dataset": data.name, "epochs": epochs, "test_acc": last["test_acc"],
            "test_top5": last["test_top5"], "test_loss": last["test_loss"],
            "train_time_s": round(train_time, 2),
            "images_per_s": round(sum(r["train_seconds"] * r["images_per_s"] for r in rows)
                                  / sum(r["train_seconds"] for r in rows), 1),
            "data_fraction": round(sum(r["data_fraction"] * r["train_seconds"] for r in rows)
                                   / sum(r["train_seconds"] for r in rows), 4),
            "params": params, "precision": precision_name(dtype), "device": str(device), "seed": config.seed,
        }  # fmt: skip
        if init:
            result["init"] = init
        if writes:
            rundir.save_weights(model, run_dir / rundir.WEIGHTS)
            rundir.plot_curves(rows, run_dir / rundir.CURVES, f"{config.model} on {data.name}")
            rundir.write_json(run_dir / rundir.RESULT, result)
        progress.print(
            f"test accuracy {100 * result['test_acc']:.2f}% (top-5 {100 * result['test_top5']:.2f}%) "
            f"in {train_time:.1f}s; results in {run_dir}"
        )
    return result
