"""A model's training recipe: the defaults `cnnlab train --model NAME` uses when no flag says
otherwise, registered beside the model as timm keeps a default config beside each of its models.

A family module may set ``RECIPE = Recipe(...)`` for all its variants, and one variant may have its
own with ``@register(recipe=Recipe(...))``; a model with neither trains with ``DEFAULT``. Every field
but the ones that describe the recipe (``ABOUT``) is a `cnnlab train` flag of the same name
(``model_args``: ``--model-arg``, one option each), and a flag that is given wins over the recipe;
`config.json` records which fields came from the recipe.

A model may also have the recipe of its paper, which `cnnlab train --recipe paper` uses: a variant's
own with ``@register(paper=Recipe(...))``, else its family module's ``PAPER_RECIPE``, either one
``Recipe`` for every variant or a dict from variant name to ``Recipe``. A paper recipe says what it
trained on (``data``), what the paper reports (``reports``), where it is written (``source``) and what
cnnlab had to choose where the paper is silent or vague (``notes``); docs/papers.md is their render.

The learning rate, one rule for both kinds: ``lr`` is the peak rate at a batch of ``batch_size``
images (128 where a recipe names none), and a run at another batch scales it linearly (Goyal et al.
2017). A default recipe thus keeps its rate "at 128"; a paper recipe states the paper's own rate at the
paper's own batch, which it also trains with unless --batch-size says otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("sgd", "nesterov", "adamw", "rmsprop")  # all torch.optim's
BATCH = 128  # the batch a recipe's rate is for, and the one it trains with, unless it names its own


@dataclass(frozen=True)
class Recipe:
    epochs: int = 12  # without --epochs; raised on a small dataset to reach --min-steps optimizer steps
    optimizer: str = "sgd"
    lr: float = 0.1  # the peak rate at a batch of batch_size (or 128), scaled linearly with the batch
    momentum: float = 0.9  # SGD's and RMSprop's momentum, AdamW's first beta
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True  # False: BatchNorm's scales and shifts and every bias skip the decay
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    clip_grad_norm: float | None = None  # the gradients' global norm is clipped to this, if set
    ema_decay: float | None = None  # if set, the weights evaluated and saved are this moving average
    min_steps: int = 360  # optimizer steps a run without --epochs gets at least (mnist5k: 372 in 12)
    image_size: int | None = None  # smaller images are resized up to this side; None: the model's minimum
    aux_weight: float | None = None  # each auxiliary classifier's share of the loss; None: loss.AUX_WEIGHT
    # Options of the model's builder (dropout, drop-path, initialization), as --model-arg KEY=VALUE
    # gives them; a mapping here, kept as sorted pairs so that a recipe stays hashable.
    model_args: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()
    batch_size: int | None = None  # the batch lr is for and the run's without --batch-size; None: 128
    milestones: tuple[float, ...] = (0.5, 0.75)  # "step": where lr is multiplied by gamma, as run fractions
    gamma: float = 0.1  # "step" and "exponential": the factor of each decay
    decay_every: float | None = None  # "exponential": epochs between decays, counted after the warm-up
    warmup_factor: float | None = None  # None: warm up linearly from ~0; else hold this fraction of lr
    mixup: float | None = None  # MixUp's Beta alpha (data/mix.py); None: off
    cutmix: float | None = None  # CutMix's Beta alpha; None: off
    data: str | None = None  # a paper recipe's dataset: a cnnlab dataset name, or "imagenet"
    reports: str | None = None  # the number the paper reports for this model, with its table
    source: str | None = None  # the paper and the section that gives the recipe
    notes: str | None = None  # what cnnlab chose where the paper is silent or vague, and what differs

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        object.__setattr__(self, "model_args", tuple(sorted(dict(self.model_args).items())))

    @property
    def batch(self) -> int:
        """The batch the recipe's rate is for."""
        return self.batch_size or BATCH

    def replace(self, **changes: Any) -> Recipe:
        """This recipe with ``changes``: the variants trained by one paper differ in what it reports."""
        return dataclasses.replace(self, **changes)


DEFAULT = Recipe()

# What a recipe says about itself rather than about the training: no flag sets these.
ABOUT = ("data", "reports", "source", "notes")
# The TrainConfig fields a recipe fills when the user leaves them unset. Epochs and image size are the
# training loop's to settle, once it knows the dataset; model_args join the run's model_kwargs.
FIELDS = tuple(
    name for name in Recipe.__dataclass_fields__ if name not in ("epochs", "image_size", "model_args", *ABOUT)
)
# The fields only some schedules read, and which.
SCHEDULE_FIELDS = {"milestones": ("step",), "gamma": ("step", "exponential"), "decay_every": ("exponential",)}
