"""A model's training recipe: the defaults `cnnlab train --model NAME` uses when no flag says
otherwise, registered beside the model as timm keeps a default config beside each of its models.

A family module may set ``RECIPE = Recipe(...)`` for all its variants, and one variant may have its
own with ``@register(recipe=Recipe(...))``; a model with neither trains with ``DEFAULT``. Every field
is a `cnnlab train` flag of the same name, and a flag that is given wins over the recipe;
`config.json` records which fields came from the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("sgd", "nesterov", "adamw", "rmsprop")  # all torch.optim's


@dataclass(frozen=True)
class Recipe:
    epochs: int = 12  # without --epochs; raised on a small dataset to reach --min-steps optimizer steps
    optimizer: str = "sgd"
    lr: float = 0.1  # the peak rate at a batch of 128, scaled linearly with the batch (Goyal et al. 2017)
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

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        object.__setattr__(self, "model_args", tuple(sorted(dict(self.model_args).items())))


DEFAULT = Recipe()

# The TrainConfig fields a recipe fills when the user leaves them unset. Epochs and image size are the
# training loop's to settle, once it knows the dataset; model_args join the run's model_kwargs.
FIELDS = tuple(
    name for name in Recipe.__dataclass_fields__ if name not in ("epochs", "image_size", "model_args")
)
