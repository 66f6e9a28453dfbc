"""The training loop: ``fit(TrainConfig())`` trains a registered model on a dataset and writes a run
directory. Everything is checked before the run directory is created, so a bad name, path or input
size leaves nothing behind."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import data as datasets
from .. import rundir
from ..data.augment import Normalize, centre_crop, plan_epoch
from ..data.base import Dataset
from ..errors import CnnlabError, InputSizeError, RunDirError
from ..evaluate import evaluate
from ..loss import AUX_WEIGHT
from ..models import check_input_size, create_model, min_input_size, paper_recipe_of, recipe_of
from ..models.recipe import DEFAULT as DEFAULT_RECIPE
from ..runconfig import FORMAT_VERSION, DataInfo, RunConfig
from ..runtime import channels_last_default, precision_name, resolve_device, resolve_precision
from ..text import first_line
from . import finetune
from .config import CROP_FRACTION, DEFAULT_MODEL, RECIPE_FIELDS, RESIZED_MIN_SIDE, TrainConfig, apply_recipe
from .distributed import World, convert_sync_batchnorm, local_batch, setup, teardown
from .epoch import Optimization, index_epoch, train_epoch
from .progress import TrainProgress
from .schedule import load_scheduler_state, make_optimizer, restore_rates

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
    except dist.DistBackendError as e:  # a peer died or hung: say so in one line, do not hang
        raise CnnlabError(
            f"process {world.rank} of {world.size} lost its peers ({first_line(e)[:200]}); "
            f"continue with --resume {config.out}"
        ) from None
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
    with TrainProgress(s.epochs, live=live, quiet=quiet) as progress:
        _announce(s, progress, resumed_after=len(rows))
        for epoch in range(len(rows) + 1, s.epochs + 1):
            rows.append(_epoch(s, epoch, progress))
            if world.main:
                rundir.write_metrics(s.run_dir / rundir.METRICS, rows)
                rundir.save_checkpoint(_checkpoint(s, epoch, rows), s.run_dir / rundir.CHECKPOINT)
                if observe:
                    observed.append(_observe(observe, s, epoch))
            progress.end_epoch(rows[-1])
        result = _finish(s, rows, time.perf_counter() - started)
        progress.print(
            f"test accuracy {100 * result['test_acc']:.2f}% (top-5 {100 * result['test_top5']:.2f}%) "
            f"in {result['train_time_s']:.1f}s; results in {s.run_dir}"
        )
    if observe:
        result = {**result, "observed": observed}
    return result


def _observe(observe: Observer, s: Session, epoch: int) -> dict[str, Any]:
    # Its own random state: a forward pass with dropout would otherwise shift the training's draws.
    with torch.random.fork_rng(devices=[s.device] if s.device.type == "cuda" else []):
        return observe(s.model, epoch)


def _set_up(config: TrainConfig, resuming: bool, world: World, device_name: str) -> Session:
    """Data, model and optimizer, every check done before the run directory is created."""
    local_batch(config.batch_size, world)
    device = resolve_device(device_name)
    dtype = resolve_precision(config.precision, device)
    data, notes, resized_up = _load_data(config)
    if config.recipe == "paper":
        notes += _paper_notes(config, data)
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=data.num_classes, in_chans=data.in_chans, **config.model_kwargs
    )
    channels_last = (
        config.channels_last if config.channels_last is not None else channels_last_default(device)
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    crop_side = _resized_crop_side(config, data, model, resized_up, notes)
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
    steps_per_epoch = max(1, len(data.train_labels) // config.batch_size)
    # Storing the training set twice would change nothing.
    epochs = 1 if nonparametric else _epochs(config, steps_per_epoch, notes)
    return Session(
        config=config, world=world, device=device, dtype=dtype, data=data, model=model, trained=model,
        memory_format=memory_format, run_dir=run_dir, normalize=Normalize(data.mean, data.std).to(device),
        opt=None if nonparametric else _optimization(model, config, epochs, steps_per_epoch, dtype, device),
        epochs=epochs, padding=padding, crop_side=crop_side, steps_per_epoch=steps_per_epoch, init=init,
        notes=notes,
    )  # fmt: skip


def _load_data(config: TrainConfig) -> tuple[Dataset, list[str], bool]:
    """The dataset as the model takes it: images smaller than its minimum side are resized up to it
    (an explicit --image-size wins), and flipped or not as --hflip says; a line for each change, and
    whether the images were resized up."""
    data = datasets.load(
        config.data,
        root=config.data_root,
        download=config.download,
        image_size=config.image_size,
        strict=config.strict,
        cache=True,
    )
    notes: list[str] = []
    resized_up = False
    if config.image_size is None:
        with torch.device("meta"):  # its minimum side only: no memory, no initialization
            probe = create_model(
                config.model, num_classes=data.num_classes, in_chans=data.in_chans, **config.model_kwargs
            )
        minimum = min_input_size(probe)
        recipe_side = recipe_of(config.model, paper=config.recipe == "paper").image_size  # type: ignore[arg-type]
        wanted = recipe_side or minimum
        if min(data.image_size) < wanted:
            side = -(-max(wanted, minimum) // 8) * 8  # a multiple of 8 keeps the strided stages' maps whole
            notes.append(
                f"{data.name}'s {'x'.join(map(str, data.image_size))} images are smaller than {config.model} "
                f"trains on ({wanted}x{wanted}): resized to {side}x{side} (--image-size chooses another side)"
            )
            if recipe_side:
                config.from_recipe.append("image_size")
            config.image_size = side  # recorded in config.json: a resumed run and `eval` resize alike
            data = datasets.resize(data, side)
            resized_up = True
    if config.hflip is not None:
        data = dataclasses.replace(data, hflip=config.hflip)
    return data, notes, resized_up


def _resized_crop_side(
    config: TrainConfig, data: Dataset, model: nn.Module, resized: bool, notes: list[str]
) -> int | None:
    """The side of random resized crops, where the run takes them: ``--crop resized``, or ``auto`` on
    the images of a store, or of a folder kept at its own size, of at least RESIZED_MIN_SIDE pixels:
    images resized by the run (up to the model's size, or to --image-size) may have no detail to crop
    into. Never for k-NN or a model without translation invariance. ImageNet crops 224 from images
    resized to 256: the same 0.875 of the stored side, in multiples of 8."""
    side = min(data.image_size)
    kind = datasets.source_kind(config.data)
    if config.crop == "resized" and kind not in ("store", "folder"):
        raise CnnlabError(
            f"--crop resized takes crops of images larger than the model's input, and {config.data}'s are "
            "small: train on an image folder or a store (cnnlab data pack --size) instead"
        )
    own_size = not resized and (kind == "store" or config.image_size is None)
    auto = config.crop == "auto" and kind in ("store", "folder") and own_size and side >= RESIZED_MIN_SIDE
    if not (config.crop == "resized" or auto):
        return None
    if getattr(model, "is_nonparametric", False) or not getattr(model, "translation_invariant", True):
        if config.crop == "resized":
            notes.append(f"--crop resized does not apply to {config.model}: it trains on whole images")
        return None
    crop = min(side, max(min_input_size(model), int(CROP_FRACTION * side / 8 + 0.5) * 8))
    size = "x".join(map(str, data.image_size))
    notes.append(
        f"random resized crops of the {size} images at {crop}x{crop}, evaluated on the centre "
        f"{crop}x{crop} (--crop pad trains on padded crops at {size})"
    )
    return crop


def _paper_notes(config: TrainConfig, data: Dataset) -> list[str]:
    """Where the paper's recipe meets other data than the paper's: said once, not refused."""
    paper = paper_recipe_of(config.model)  # type: ignore[arg-type]
    if paper is None or paper.data is None or paper.data == data.name:
        return []
    return [f"{config.model}'s paper recipe is the one for {paper.data}; this run trains on {data.name}"]


def _epochs(config: TrainConfig, steps_per_epoch: int, notes: list[str]) -> int:
    """--epochs, or the recipe's epochs raised so that a small dataset gets at least min_steps steps:
    an epoch count tuned on one dataset starves a smaller one of optimizer steps. A paper's recipe
    keeps the paper's epochs: reproducing it is the point."""
    if config.epochs is not None:
        return config.epochs
    if config.recipe == "paper":
        return recipe_of(config.model, paper=True).epochs  # type: ignore[arg-type]
    planned = recipe_of(config.model).epochs  # type: ignore[arg-type]
    epochs = max(planned, -(-config.min_steps // steps_per_epoch))
    if epochs > planned:
        notes.append(
            f"{epochs} epochs of {steps_per_epoch} steps, for at least {config.min_steps} optimizer steps "
            "on this small dataset (--epochs chooses)"
        )
    return epochs


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
        averaging = torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay)
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
    return state["metrics"]


def _run_config(s: Session) -> RunConfig:
    c, d = s.config, s.data
    return RunConfig(
        model=c.model, model_kwargs=c.model_kwargs, num_classes=d.num_classes, in_chans=d.in_chans,
        params=s.params,
        data=DataInfo(name=d.name, source=str(c.data), classes=d.classes, mean=list(d.mean),
                      std=list(d.std), input_size=list(s.input_size), hflip=d.hflip,
                      train_size=len(d.train_labels), test_size=len(d.test_labels),
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
        f"training {c.model} ({s.params:,} parameters) on {d.name}: {len(d.train_labels):,} "
        f"training and {len(d.test_labels):,} test images of {'x'.join(map(str, s.input_size))}, "
        f"{d.num_classes} classes; {s.device}, {precision_name(s.dtype)}, {recipe}; writing {s.run_dir}"
    )
    for note in s.notes:
        progress.print(note)
    if s.init:
        progress.print(finetune.describe(s.init))
    if resumed_after:
        progress.print(f"resuming after epoch {resumed_after} of {s.epochs}")


def _epoch(s: Session, epoch: int, progress: TrainProgress) -> dict[str, float]:
    """Train one epoch, then evaluate: the epoch's row of metrics.csv."""
    n = len(s.data.train_labels)
    progress.start_epoch(epoch, n if s.opt is None else s.steps_per_epoch * s.config.batch_size)
    start = time.perf_counter()
    if s.opt is None:
        loss, acc, seen, data_seconds = index_epoch(
            s.model, s.data, s.normalize, s.config.batch_size, s.device, progress
        )
    else:
        resized = (*s.data.image_size, s.crop_side) if s.crop_side else None
        plan = plan_epoch(n, s.config.seed, epoch, s.padding, s.data.hflip, resized=resized)  # type: ignore[arg-type]
        loss, acc, seen, data_seconds = train_epoch(
            s.trained, s.data, plan, s.normalize, s.opt, s.config.batch_size, s.config.label_smoothing or 0.0,
            s.device, s.dtype, progress, epoch, s.memory_format, s.world,
        )  # fmt: skip
    train_seconds = time.perf_counter() - start
    # Evaluated in fp32 whatever the training precision, so `cnnlab eval` reproduces it exactly.
    test = evaluate(
        s.kept, s.test_images, s.data.test_labels, s.normalize, s.device, memory_format=s.memory_format
    )
    return {
        "epoch": epoch, "train_loss": loss, "train_acc": acc, "test_loss": test["loss"],
        "test_acc": test["top1"], "test_top5": test["top5"],
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
        "metrics": rows, **({"init": s.init} if s.init else {}),
    }  # fmt: skip


def _finish(s: Session, rows: list[dict[str, float]], train_time: float) -> dict[str, Any]:
    """result.json's content; rank 0 also writes the weights, the curves and result.json."""
    last = rows[-1]
    seconds = sum(r["train_seconds"] for r in rows)
    result = {
        "model": s.config.model, "dataset": s.data.name, "epochs": s.epochs, "test_acc": last["test_acc"],
        "test_top5": last["test_top5"], "test_loss": last["test_loss"], "train_time_s": round(train_time, 2),
        "images_per_s": round(sum(r["train_seconds"] * r["images_per_s"] for r in rows) / seconds, 1),
        "data_fraction": round(sum(r["data_fraction"] * r["train_seconds"] for r in rows) / seconds, 4),
        "params": s.params, "precision": precision_name(s.dtype), "device": str(s.device),
        "seed": s.config.seed, **({"init": s.init} if s.init else {}),
    }  # fmt: skip
    if s.world.main:
        rundir.save_weights(s.kept, s.run_dir / rundir.WEIGHTS)
        rundir.plot_curves(rows, s.run_dir / rundir.CURVES, f"{s.config.model} on {s.data.name}")
        rundir.write_json(s.run_dir / rundir.RESULT, result)
    return result
