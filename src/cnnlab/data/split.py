"""A validation set held out of the training set: stratified, and a function of the seed alone.

Choosing anything by the test set (a checkpoint, an epoch count, a recipe) makes its accuracy an
optimistic estimate; the validation set is what such choices are made on. Each class gives the same
share of its images, so a rare class is neither left out of validation nor drained from training.
"""

from __future__ import annotations

import torch

from ..errors import CnnlabError

_SALT = 0x5F3759DF  # keeps the split's draws apart from the epochs' (augment.epoch_generator)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), each sorted: ``round(fraction * n)`` images of each
    class of n images go to validation, at least one where the class has two or more."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + _SALT) % (2**63))
    held: list[torch.Tensor] = []
    for c in torch.unique(labels).tolist():  # sorted: the draws do not depend on the labels' order
        members = (labels == c).nonzero().squeeze(1)
        n = len(members)
        k = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        held.append(members[torch.randperm(n, generator=g)[:k]])
    val = torch.cat(held).sort().values if held else torch.empty(0, dtype=torch.long)
    if len(val) == 0:
        raise CnnlabError(
            f"--val-fraction {fraction:g} holds out no image: every class has fewer than two training images"
        )
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().squeeze(1), val
