"""The training loop: ``fit(TrainConfig())`` trains a registered model on a dataset and writes a run
directory. Everything is checked before the run directory is created, so a bad name, path or input
size leaves nothing behind."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import rundir
from ..data.augment import Normalize, centre_crop, plan_epoch
from ..data.base import Dataset
from ..data.mix import plan_mix
from ..data.split import Rows, validation_split
from ..errors import CnnlabError, InputSizeError, RunDirError
from ..evaluate import evaluate
from ..loss import AUX_WEIGHT
from ..models import check_input_size, create_model, model_family
from ..models.recipe import DEFAULT as DEFAULT_RECIPE
from ..runconfig import FORMAT_VERSION, DataInfo, RunConfig
from ..runtime import channels_last_default, precision_name, resolve_device, resolve_precision
from ..text import first_line
from . import card, finetune, inputs
from .config import DEFAULT_MODEL, RECIPE_FIELDS, TrainConfig, apply_recipe
from .distributed import World, convert_sync_batchnorm, from_rank_0, local_batch, setup, teardown
from .epoch import Optimization, index_epoch, train_epoch
from .logger import StepLog, check_available
from .progress import TrainProgress
from .schedule import ema_update, load_scheduler_state, make_optimizer, restore_rates
from .selection import Selection

# Called with the model and the epoch just trained (0: before training); see ``fit``.
Observer = Callable[[nn.Module, int], dict[str, Any]]


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
        raise InputSizeError(f"{name} cannot take {c}x{h}x{w} inputs: {first_line(e)}") from None
    finally:
        model.train()


def resume(run_dir: str | os.PathLike[str], live: bool | None = None, quiet: bool = False) -> dict[str, Any]:
    """Continue an interrupted run from its last checkpoint, with the settings of its config.json.

    The data order and augmentation of each epoch are a function of (seed, epoch), and the checkpoint
    holds the model, optimizer, scheduler, scaler, random state and (with EMA) the averaged weights
    after its epoch, so on the CPU in
    fp32 the resumed run ends with the very weights of an uninterrupted one.
    """
    run = Path(run_dir)
    saved = rundir.read_config(run)
    if (run / rundir.RESULT).exists():
        raise RunDirError(f"{run} has finished training already; nothing to resume")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    # A run keeps its own settings, never the model's recipe of today: one from before recipes existed
    # trained with what is now the common recipe, so its missing fields take that one's values; one
    # from before --crop, with padded crops.
    train = {name: getattr(DEFAULT_RECIPE, name) for name in RECIPE_FIELDS} | {"crop": "pad"} | saved.train
    config = TrainConfig(**{k: v for k, v in train.items() if k in fields})
    config.out = str(run)
    return fit(config, live=live, quiet=quiet, resuming=True)


def fit(
    config: TrainConfig,
    live: bool | None = None,
    quiet: bool = False,
    resuming: bool = False,
    observe: Observer | None = None,
) -> dict[str, Any]:
    """Train as ``config`` says, write the run directory, and return ``result.json``'s content.
    ``resuming``: the run directory exists; continue from its checkpoint (see ``resume``).
    ``observe(model, epoch)`` is called before the first epoch (epoch 0) and after each epoch, under
    its own random state so that it leaves the training unchanged; what it returns is kept in the
    returned dict's ``observed`` list (not in result.json)."""
    config.check()
    if config.init and not resuming:  # a resumed run has its init's architecture in its config already
        # Absolute, so that the config.json of the run names it whatever the directory it is read from.
        config.init = str(Path(config.init).resolve())
        config.model, config.model_kwargs = finetune.init_architecture(
            config.init, config.model, config.model_kwargs
        )
    config.model = config.model or DEFAULT_MODEL
    if not resuming:  # a resumed run's settings are complete: None means off, not "ask the recipe"
        apply_recipe(config)
    world, device_name = setup(config.device)
    try:
        return _fit(config, live, quiet or not world.main, resuming, world, device_name, observe)
    except BaseException as e:
        if world.distributed:  # its frames hold the DDP wrapper, and the wrapper the group teardown ends
            traceback.clear_frames(e.__traceback__)
        if isinstance(e, dist.DistBackendError):  # a peer died or hung: say so in one line, do not hang
            raise CnnlabError(
                f"process {world.rank} of {world.size} lost its peers ({first_line(e)[:200]}); "
                f"continue with --resume {config.out}"
            ) from None
        raise
    finally:
        teardown(world)


@dataclass
class Session:
    """What the steps of a training share once it is set up."""

    config: TrainConfig
    world: World
    device: torch.device
    dtype: torch.dtype | None
    data: Dataset
    model: nn.Module  # the unwrapped model the optimizer trains, as checkpoints hold it
    trained: nn.Module  # the model the steps run: DistributedDataParallel around it when data-parallel
    memory_format: torch.memory_format
    run_dir: Path
    normalize: Normalize
    opt: Optimization | None  # None: a non-parametric model (k-NN) that indexes its training set
    epochs: int
    padding: int
    crop_side: int | None  # random resized crops of this side, and the centre crop to evaluate; None: padded
    steps_per_epoch: int
    init: dict[str, Any] | None = None  # what a fine-tuning took from its init run
    notes: list[str] = field(default_factory=list)  # what was decided for the user, said once
    train_idx: torch.Tensor | None = None  # with a validation split, the training part; None: all
    val: tuple[Rows, torch.Tensor] | None = None  # the held-out images (read as evaluated) and labels
    selection: Selection = field(default_factory=Selection)
    log: StepLog | None = None  # --log: event files, written by rank 0

    @property
    def kept(self) -> nn.Module:
        """The weights evaluated and saved: the moving average where the recipe keeps one."""
        return self.opt.ema.module if self.opt is not None and self.opt.ema is not None else self.model

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def input_size(self) -> tuple[int, int, int]:
        return _input_size(self.data, self.crop_side)

    @property
    def test_images(self) -> torch.Tensor:
        return centre_crop(self.data.test_images, self.crop_side) if self.crop_side else self.data.test_images

    @property
    def train_size(self) -> int:
        return len(self.data.train_labels) if self.train_idx is None else len(self.train_idx)


def _input_size(data: Dataset, crop_side: int | None) -> tuple[int, int, int]:
    return (data.in_chans, crop_side, crop_side) if crop_side else (data.in_chans, *data.image_size)


def _fit(
    config: TrainConfig,
    live: bool | None,
    quiet: bool,
    resuming: bool,
    world: World,
    device_name: str,
    observe: Observer | None,
) -> dict[str, Any]:
    s = _set_up(config, resuming, world, device_name)
    rows = _restore(s) if resuming else []
    if world.distributed:  # gradients are averaged across the processes
        s.trained = DDP(s.model, device_ids=[s.device.index] if s.device.type == "cuda" else None)
    if world.main:  # only rank 0 touches the run directory
        rundir.make_run_dir(s.run_dir)
        rundir.write_config(s.run_dir, _run_config(s))
    # Seconds of the epochs before an interruption count towards the training time.
    started = time.perf_counter() - sum(r["seconds"] for r in rows)
    observed = [_observe(observe, s, len(rows))] if observe and world.main else []
    s.log = (
        StepLog(s.run_dir, s.steps_per_epoch, config.log_every, len(rows))
        if config.log and world.main
        else None
    )
    closing_log = contextlib.closing(s.log) if s.log else contextlib.nullcontext()
    with TrainProgress(s.epochs, live=live, quiet=quiet) as progress, closing_log:
        _announce(s, progress, resumed_after=len(rows))
        for epoch in range(len(rows) + 1, s.epochs + 1):
            if s.selection.stops(rows):
                break
            rows.append(from_rank_0(_epoch(s, epoch, progress), world))
            s.selection.after_epoch(rows, s.kept)
            if world.main:
                rundir.write_metrics(s.run_dir / rundir.METRICS, rows)
                rundir.save_checkpoint(_checkpoint(s, epoch, rows), s.run_dir / rundir.CHECKPOINT)
                if s.log:
                    s.log.epoch(rows[-1])
                if observe:
                    observed.append(_observe(observe, s, epoch))
            progress.end_epoch(rows[-1])
        result = _finish(s, rows, time.perf_counter() - started)
        progress.print(_closing_line(result, s.run_dir))
    if observe:
        result = {**result, "observed": observed}
    return result


def _closing_line(result: dict[str, Any], run_dir: Path) -> str:
    kept = result["kept"]
    which = f"; weights of epoch {kept['epoch']}, the best on validation" if kept["weights"] == "best" else ""
    stopped = f"; stopped early after epoch {result['epochs']}" if kept["stopped_early"] else ""
    return (
        f"test accuracy {100 * result['test_acc']:.2f}% (top-5 {100 * result['test_top5']:.2f}%) in "
        f"{result['train_time_s']:.1f}s{which}{stopped}; results in {run_dir}"
    )


def _observe(observe: Observer, s: Session, epoch: int) -> dict[str, Any]:
    # Its own random state: a forward pass with dropout would otherwise shift the training's draws.
    with torch.random.fork_rng(devices=[s.device] if s.device.type == "cuda" else []):
        return observe(s.model, epoch)


def _set_up(config: TrainConfig, resuming: bool, world: World, device_name: str) -> Session:
    """Data, model and optimizer, every check done before the run directory is created."""
    local_batch(config.batch_size, world)
    check_available(config.log)
    device = resolve_device(device_name)
    dtype = resolve_precision(config.precision, device, model_family(config.model))  # type: ignore[arg-type]
    data, notes, resized_up = inputs.load_data(config)
    notes += inputs.precision_notes(config, device, dtype)
    if config.recipe == "paper":
        notes += inputs.paper_notes(config, data)
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=data.num_classes, in_chans=data.in_chans, **config.model_kwargs
    )
    channels_last = (
        config.channels_last if config.channels_last is not None else channels_last_default(device)
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    crop_side = inputs.resized_crop_side(config, data, model, resized_up, notes)
    check_input(model, config.model, _input_size(data, crop_side), device)
    run_dir = Path(config.out) if config.out else default_run_dir(config.model, data.name)
    if not resuming:
        rundir.check_new_run_dir(run_dir)
    init = None
    if config.init and not (resuming and (run_dir / rundir.CHECKPOINT).exists()):
        # A checkpoint replaces the weights. The images are normalized with the new data's own mean
        # and std, as any training: the first steps adapt the copied layers (BatchNorm's statistics
        # among them) to them.
        init = finetune.init_from_run(model, config.init, config.model_kwargs)
    if world.distributed:
        if config.sync_bn:
            model = convert_sync_batchnorm(model, device)
        dist.barrier()  # every process has checked the run directory before rank 0 creates it
    nonparametric = getattr(model, "is_nonparametric", False)
    # Random crops teach translation invariance; a model without it (one weight per pixel) only loses.
    crops = getattr(model, "translation_invariant", True)
    padding = config.padding if config.padding is not None else max(1, data.image_size[0] // 8) * crops
    padding = 0 if crop_side else padding
    train_idx, val = _validation_split(config, data, crop_side)
    steps_per_epoch = max(
        1, (len(data.train_labels) if train_idx is None else len(train_idx)) // config.batch_size
    )
    # Storing the training set twice would change nothing.
    epochs = 1 if nonparametric else inputs.plan_epochs(config, steps_per_epoch, notes)
    return Session(
        config=config, world=world, device=device, dtype=dtype, data=data, model=model, trained=model,
        memory_format=memory_format, run_dir=run_dir, normalize=Normalize(data.mean, data.std).to(device),
        opt=None if nonparametric else _optimization(model, config, epochs, steps_per_epoch, dtype, device),
        epochs=epochs, padding=padding, crop_side=crop_side, steps_per_epoch=steps_per_epoch, init=init,
        notes=notes, train_idx=train_idx, val=val, selection=Selection(config.keep, config.patience),
    )  # fmt: skip


def _validation_split(
    config: TrainConfig, data: Dataset, crop_side: int | None
) -> tuple[torch.Tensor | None, tuple[Rows, torch.Tensor] | None]:
    """(training indices, (validation images, labels)) with --val-fraction, else (None, None)."""
    if config.val_fraction is None:
        return None, None
    train_idx, val_idx = validation_split(data.train_labels, config.val_fraction, config.seed)
    images = centre_crop(data.train_images, crop_side) if crop_side else data.train_images
    return train_idx, (Rows(images, val_idx), data.train_labels[val_idx])


def _optimization(
    model: nn.Module,
    config: TrainConfig,
    epochs: int,
    steps_per_epoch: int,
    dtype: torch.dtype | None,
    device: torch.device,
) -> Optimization:
    optimizer, scheduler = make_optimizer(
        model,
        config,  # type: ignore[arg-type]  (its recipe fields are all set by apply_recipe)
        total_steps=epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),  # type: ignore[operator]
        steps_per_epoch=steps_per_epoch,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = None
    if config.ema_decay is not None:  # BatchNorm's running statistics are averaged too
        averaging = ema_update(config.ema_decay)
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=averaging, use_buffers=True)
    aux_weight = AUX_WEIGHT if config.aux_weight is None else config.aux_weight
    return Optimization(optimizer, scheduler, scaler, config.lr, config.clip_grad_norm, ema, aux_weight)  # type: ignore[arg-type]


def _restore(s: Session) -> list[dict[str, float]]:
    """The metrics so far, with every state put back as the last checkpoint holds it."""
    checkpoint = s.run_dir / rundir.CHECKPOINT
    if not checkpoint.exists():  # killed before its first checkpoint: start over
        return []
    state = rundir.load_checkpoint(checkpoint)
    s.model.load_state_dict(state["model"])
    if s.opt is not None:
        if s.opt.ema is not None:
            s.opt.ema.load_state_dict(state["ema"])
        load_scheduler_state(s.opt.scheduler, state["scheduler"])  # before the optimizer: see there
        s.opt.optimizer.load_state_dict(state["optimizer"])
        restore_rates(s.opt.scheduler, s.opt.optimizer)
        s.opt.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    s.init = state.get("init")  # what the interrupted run took from its init run, for result.json
    s.selection.best = state.get("best")
    return state["metrics"]


def _run_config(s: Session) -> RunConfig:
    c, d = s.config, s.data
    return RunConfig(
        model=c.model, model_kwargs=c.model_kwargs, num_classes=d.num_classes, in_chans=d.in_chans,
        params=s.params,
        data=DataInfo(name=d.name, source=str(c.data), classes=d.classes, mean=list(d.mean),
                      std=list(d.std), input_size=list(s.input_size), hflip=d.hflip,
                      train_size=s.train_size, val_size=len(s.val[1]) if s.val else 0,
                      test_size=len(d.test_labels),
                      resize_size=min(d.image_size) if s.crop_side else None),
        train={**asdict(c), "epochs": s.epochs, "padding": s.padding},
        device=str(s.device), precision=precision_name(s.dtype),
        channels_last=s.memory_format == torch.channels_last, torch=torch.__version__,
    )  # fmt: skip


def _announce(s: Session, progress: TrainProgress, resumed_after: int) -> None:
    c, d = s.config, s.data
    recipe = "indexing the training set" if s.opt is None else f"lr {s.opt.lr:g}, batch {c.batch_size}"
    recipe += ", the paper's recipe" if c.recipe == "paper" and s.opt is not None else ""
    progress.print(
        f"training {c.model} ({s.params:,} parameters) on {d.name}: {s.train_size:,} training"
        f"{f', {len(s.val[1]):,} validation' if s.val else ''} and {len(d.test_labels):,} test images of "
        f"{'x'.join(map(str, s.input_size))}, "
        f"{d.num_classes} classes; {s.device}, {precision_name(s.dtype)}, {recipe}; writing {s.run_dir}"
    )
    for note in s.notes:
        progress.print(note)
    if s.init:
        progress.print(finetune.describe(s.init))
    if resumed_after:
        progress.print(f"resuming after epoch {resumed_after} of {s.epochs}")


def _epoch(s: Session, epoch: int, progress: TrainProgress) -> dict[str, float]:
    """Train one epoch, then evaluate on the validation set if there is one, else on the test set:
    the epoch's row of metrics.csv."""
    progress.start_epoch(epoch, s.train_size if s.opt is None else s.steps_per_epoch * s.config.batch_size)
    start = time.perf_counter()
    if s.opt is None:
        loss, acc, seen, data_seconds = index_epoch(
            s.model, s.data, s.normalize, s.config.batch_size, s.device, progress, s.train_idx
        )
    else:
        c = s.config
        resized = (*s.data.image_size, s.crop_side) if s.crop_side else None
        n = len(s.data.train_labels)
        plan = plan_epoch(n, c.seed, epoch, s.padding, s.data.hflip, resized=resized, subset=s.train_idx)  # type: ignore[arg-type]
        mix = None
        if c.mixup or c.cutmix:
            size = (s.crop_side, s.crop_side) if s.crop_side else s.data.image_size
            mix = plan_mix(plan.order, n, c.seed, epoch, size, c.mixup, c.cutmix)  # type: ignore[arg-type]
        loss, acc, seen, data_seconds = train_epoch(
            s.trained, s.data, plan, s.normalize, s.opt, c.batch_size, c.label_smoothing or 0.0,  # type: ignore[arg-type]
            s.device, s.dtype, progress, epoch, s.memory_format, s.world, mix, s.log,
        )  # fmt: skip
    train_seconds = time.perf_counter() - start
    held, (images, labels) = ("val", s.val) if s.val else ("test", (s.test_images, s.data.test_labels))
    # Evaluated in fp32 whatever the training precision, so `cnnlab eval` reproduces it exactly.
    m = evaluate(s.kept, images, labels, s.normalize, s.device, memory_format=s.memory_format)
    return {
        "epoch": epoch, "train_loss": loss, "train_acc": acc, f"{held}_loss": m["loss"],
        f"{held}_acc": m["top1"], f"{held}_top5": m["top5"],
        "lr": s.opt.optimizer.param_groups[0]["lr"] if s.opt else 0.0,
        "seconds": time.perf_counter() - start, "train_seconds": train_seconds,
        "images_per_s": seen / train_seconds, "data_fraction": data_seconds / train_seconds,
    }  # fmt: skip


def _checkpoint(s: Session, epoch: int, rows: list[dict[str, float]]) -> dict[str, Any]:
    opt = s.opt
    return {
        "format_version": FORMAT_VERSION, "epoch": epoch, "model": s.model.state_dict(),
        "optimizer": opt.optimizer.state_dict() if opt else {},
        "scheduler": opt.scheduler.state_dict() if opt else {},
        "scaler": opt.scaler.state_dict() if opt else {}, "rng": torch.get_rng_state(),
        **({"ema": opt.ema.state_dict()} if opt and opt.ema else {}),
        **({"best": s.selection.best} if s.selection.best is not None else {}),
        "metrics": rows, **({"init": s.init} if s.init else {}),
    }  # fmt: skip


def _finish(s: Session, rows: list[dict[str, float]], train_time: float) -> dict[str, Any]:
    """result.json's content, on the kept weights; rank 0 also writes the weights, the curves, the
    model card and result.json. With a validation split the test set is evaluated here, once."""
    s.selection.restore(s.kept)
    if s.val:
        m = evaluate(
            s.kept, s.test_images, s.data.test_labels, s.normalize, s.device, memory_format=s.memory_format
        )
        test = {"test_acc": m["top1"], "test_top5": m["top5"], "test_loss": m["loss"]}
    else:
        test = {k: rows[-1][k] for k in ("test_acc", "test_top5", "test_loss")}
    seconds = sum(r["train_seconds"] for r in rows)
    result = {
        "model": s.config.model, "dataset": s.data.name, "epochs": len(rows), **test,
        "train_time_s": round(train_time, 2),
        "images_per_s": round(sum(r["train_seconds"] * r["images_per_s"] for r in rows) / seconds, 1),
        "data_fraction": round(sum(r["data_fraction"] * r["train_seconds"] for r in rows) / seconds, 4),
        "params": s.params, "precision": precision_name(s.dtype), "device": str(s.device),
        "seed": s.config.seed, "kept": s.selection.describe(rows, s.epochs),
        **({"init": s.init} if s.init else {}),
    }  # fmt: skip
    if s.world.main:
        rundir.save_weights(s.kept, s.run_dir / rundir.WEIGHTS)
        rundir.plot_curves(rows, s.run_dir / rundir.CURVES, f"{s.config.model} on {s.data.name}")
        card.write_card(s.run_dir, _run_config(s), result)
        rundir.write_json(s.run_dir / rundir.RESULT, result)  # last: a run with result.json is finished
    return result
