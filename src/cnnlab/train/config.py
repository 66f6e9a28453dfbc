"""What a training is asked to do: ``TrainConfig``, its checks, and the model's recipe filling in the
settings left unset."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import CnnlabError
from ..models import recipe_of
from ..models.recipe import FIELDS as RECIPE_FIELDS
from ..models.recipe import OPTIMIZERS
from ..runtime import DEVICES, PRECISIONS
from .logger import LOGS
from .schedule import SCHEDULES, scaled_lr

RECIPES = ("default", "paper")  # --recipe: the model's default recipe, or its paper's
KEEPS = ("last", "best")  # --keep: the last epoch's weights, or those best on validation

CROPS = ("auto", "pad", "resized")  # --crop: see inputs.resized_crop_side
RESIZED_MIN_SIDE = 96  # "auto" takes random resized crops of images at least this large
CROP_FRACTION = 0.875  # the crop's side over the stored side: ImageNet's 224 of 256
DEFAULT_MODEL = "resnet20"
MAX_SIDE = 2**16  # pixels: larger images are no photographs a CNN of this course takes


@dataclass
class TrainConfig:
    """A training run. The defaults train a CIFAR-style ResNet-20 on the embedded mnist5k digits."""

    model: str | None = None  # None: the init run's model, or DEFAULT_MODEL
    data: str = "mnist5k"
    data_root: str | None = None
    epochs: int | None = None  # None: the recipe's, or more to reach min_steps on a small dataset
    min_steps: int | None = None  # without --epochs, at least this many optimizer steps; None: the recipe's
    batch_size: int | None = None  # None: the recipe's (128 unless a paper recipe names its own)
    recipe: str = "default"  # which of the model's recipes fills the settings left unset: RECIPES
    # None: the model's recipe (models/recipe.py; `cnnlab models NAME` shows it), lr scaled to the batch.
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    decay_norm_and_bias: bool | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    clip_grad_norm: float | None = None
    ema_decay: float | None = None
    aux_weight: float | None = None
    milestones: list[float] | tuple[float, ...] | None = None
    gamma: float | None = None
    decay_every: float | None = None
    warmup_factor: float | None = None
    from_recipe: list[str] = field(default_factory=list)  # set by fit: the fields the recipe filled
    padding: int | None = None  # random-crop padding; None: an eighth of the side (0 for linear)
    crop: str = "auto"  # CROPS: random resized crops (ImageNet's) of large images, padded crops otherwise
    seed: int = 0
    out: str | None = None
    precision: str = "auto"
    device: str = "auto"
    channels_last: bool | None = None  # None: where it is faster (runtime.channels_last_default)
    sync_bn: bool = False  # BatchNorm over the global batch when data-parallel (distributed.py)
    image_size: int | None = None  # resize every image to this side; None: up to the model's minimum
    hflip: bool | None = None  # random horizontal flips; None: where the dataset says they keep labels
    download: bool = True
    strict: bool = False  # an unreadable image in an image folder fails the run instead of being skipped
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a run directory whose weights start the training (finetune.py)
    mixup: float | None = None  # MixUp's Beta alpha (data/mix.py); None or 0: off, unless the recipe's
    cutmix: float | None = None  # CutMix's Beta alpha; None or 0: off, unless the recipe's
    val_fraction: float | None = None  # held out of the training set, stratified (data/split.py)
    keep: str = "last"  # KEEPS: "best" keeps the epoch with the best validation accuracy
    patience: int | None = None  # stop after this many epochs without a better validation accuracy
    log: str | None = None  # logger.LOGS: event files besides metrics.csv
    log_every: int = 50  # optimizer steps between two logged losses and rates

    def check(self) -> None:
        """Each setting in its range and the settings consistent together, or one line naming the flag."""
        self.check_each()
        if self.optimizer == "nesterov" and self.momentum == 0:
            raise CnnlabError("--optimizer nesterov needs a momentum above 0 (without one, --optimizer sgd)")
        for name, value in (("--keep best", self.keep == "best"), ("--patience", self.patience)):
            if value and self.val_fraction is None:
                raise CnnlabError(f"{name} chooses by the validation set: give --val-fraction too, e.g. 0.1")
        if self.schedule == "exponential" and self.decay_every is None:
            raise CnnlabError("--schedule exponential needs --decay-every (epochs between decays)")

    def check_each(self) -> None:
        """Each setting in its range or among its choices (NaN and inf fail every range)."""
        # (value, lowest, highest, whether the lowest itself is refused, whether the highest is)
        ranges: dict[str, tuple[float | None, float, float, bool, bool]] = {
            "epochs": (self.epochs, 1, 1_000_000, False, False),
            "min_steps": (self.min_steps, 1, 10**9, False, False),
            "batch_size": (self.batch_size, 1, 2**24, False, False),
            "lr": (self.lr, 0, math.inf, True, True),
            "momentum": (self.momentum, 0, 1, False, True),
            "clip_grad_norm": (self.clip_grad_norm, 0, math.inf, True, True),
            "ema_decay": (self.ema_decay, 0, 1, True, True),
            "aux_weight": (self.aux_weight, 0, 1_000_000, False, False),
            "weight_decay": (self.weight_decay, 0, 1, False, False),
            "warmup_epochs": (self.warmup_epochs, 0, 1_000_000, False, False),
            "label_smoothing": (self.label_smoothing, 0, 1, False, True),
            "padding": (self.padding, 0, MAX_SIDE, False, False),
            "image_size": (self.image_size, 1, MAX_SIDE, False, False),
            "gamma": (self.gamma, 0, 1, True, False),
            "decay_every": (self.decay_every, 0, 1_000_000, True, False),
            "warmup_factor": (self.warmup_factor, 0, 1, True, False),
            "mixup": (self.mixup, 0, 1000, False, False),
            "cutmix": (self.cutmix, 0, 1000, False, False),
            "val_fraction": (self.val_fraction, 0, 1, True, True),
            "patience": (self.patience, 1, 1_000_000, False, False),
            "log_every": (self.log_every, 1, 10**9, False, False),
            "seed": (self.seed, -(2**63), 2**64 - 1, False, False),  # what torch.manual_seed takes
        }
        for name, (value, low, high, low_open, high_open) in ranges.items():
            if value is None:
                continue
            above = value > low if low_open else value >= low
            below = value < high if high_open else value <= high
            if not (above and below):
                interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                raise CnnlabError(f"--{name.replace('_', '-')} must be in {interval}, got {value}")
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                flag = f"--{name.replace('_', '-')}"
                raise CnnlabError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
        if self.milestones is not None:
            ms = list(self.milestones)
            if not all(0 < m < 1 for m in ms) or ms != sorted(ms):
                raise CnnlabError(f"--milestones must be increasing fractions of the run in (0, 1), got {ms}")


# The settings that take one of a few names; the CLI offers the same ones.
CHOICES: dict[str, tuple[str, ...]] = {
    "crop": CROPS,
    "recipe": RECIPES,
    "keep": KEEPS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "precision": PRECISIONS,
    "device": DEVICES,  # torchrun's per-process cuda:N is settled apart (distributed.setup)
    "log": LOGS,
}


def apply_recipe(config: TrainConfig) -> TrainConfig:
    """Fill every setting the user left unset from the model's recipe (its paper's with ``recipe``
    "paper"), and note which: a flag that is given wins, and config.json says where each value came
    from. The recipe's rate is for its own batch, so it is scaled to the run's batch."""
    model: str = config.model  # type: ignore[assignment]
    recipe = recipe_of(model, paper=True) if config.recipe == "paper" else recipe_of(model)
    if config.batch_size is None:
        config.batch_size = recipe.batch
        if recipe.batch_size is not None:
            config.from_recipe.append("batch_size")
    for name in RECIPE_FIELDS:
        if getattr(config, name) is None and getattr(recipe, name) is not None:
            value = getattr(recipe, name)
            if name == "lr":
                value = scaled_lr(value, config.batch_size, recipe.batch)
            setattr(config, name, value)
            config.from_recipe.append(name)
    if any(key not in config.model_kwargs for key, _ in recipe.model_args):  # --model-arg wins per key
        config.model_kwargs = dict(recipe.model_args) | config.model_kwargs
        config.from_recipe.append("model_args")
    config.check()
    return config
