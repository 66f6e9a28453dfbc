"""A validation set held out of the training set: stratified, and a function of the seed alone.

Choosing anything by the test set (a checkpoint, an epoch count, a recipe) makes its accuracy an
optimistic estimate; the validation set is what such choices are made on. Each class gives the same
share of its images, so a rare class is neither left out of validation nor drained from training.
"""

from __future__ import annotations

import torch

from ..errors import CnnlabError
from .base import stratified_split

_SALT = 0x5F3759DF  # keeps the split's draws apart from the epochs' (augment.epoch_generator)


def validation_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), each sorted: ``round(fraction * n)`` images of each
    class of n images go to validation, at least one where the class has two or more."""
    train, val = stratified_split(labels, fraction, (seed * 1_000_003 + _SALT) % (2**63), at_least_one=True)
    if len(val) == 0:
        raise CnnlabError(
            f"--val-fraction {fraction:g} holds out no image: every class has fewer than two training images"
        )
    return train, val


class Rows:
    """``images[index]`` without the copy: sliced, it gathers that slice's rows only. The validation part
    of a store larger than memory is thus read a batch at a time as it is evaluated, never held whole."""

    def __init__(self, images: torch.Tensor, index: torch.Tensor) -> None:
        self.images, self.index = images, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return self.images[self.index[rows]]
