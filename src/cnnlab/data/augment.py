"""Batched augmentation and the batch iterator: no per-sample Python in the hot loop.

Randomness is a function of (seed, epoch, sample index) alone: the permutation and every sample's
crop offset and flip are drawn once per epoch for the whole dataset from a generator seeded by
(seed, epoch), and a batch only looks them up. The same sample therefore gets the same crop whatever
the batch size, the number of processes, or the step a run was resumed from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Two odd constants spread (seed, epoch) pairs far apart in the generator's seed space.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + 1) % (2**63))


@dataclass(frozen=True)
class EpochPlan:
    """Everything random about one epoch: the sample order and each sample's crop and flip."""

    order: torch.Tensor  # (N,) permutation of sample indices
    offsets: torch.Tensor  # (N, 2) crop offsets in 0..2*padding, indexed by sample
    flips: torch.Tensor  # (N,) bool, indexed by sample
    padding: int


def plan_epoch(n: int, seed: int, epoch: int, padding: int, hflip: bool, shuffle: bool = True) -> EpochPlan:
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    return EpochPlan(order, offsets, flips, padding)


def random_crop(images: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad a (N, C, H, W) batch by ``padding`` and cut each image at its own (dy, dx) offset."""
    if padding == 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = (offsets[:, 0, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
    cols = (offsets[:, 1, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts the channel dim last: (N, H, W, C).
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def hflip(images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    return torch.where(flips[:, None, None, None], images.flip(3), images)


class Normalize(torch.nn.Module):
    """uint8 images to normalized floats, as the first step of the model's input.

    Kept as a module so that a run stores it with the model: inference needs the same statistics.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, -1, 1, 1)), persistent=False)
        self.register_buffer(
            "shift", (torch.tensor(mean) / torch.tensor(std)).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * self.scale - self.shift


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    plan: EpochPlan | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches; with a plan, shuffled and augmented by it."""
    n = len(labels)
    order = plan.order if plan is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        if plan is not None:
            x = hflip(random_crop(x, plan.offsets[idx], plan.padding), plan.flips[idx])
        yield x, labels[idx]
