"""MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on the uint8 batches.

Like the crops and flips, every draw is a function of (seed, epoch, sample index): each sample is mixed
with the sample after it in the epoch's order, with its own Beta(alpha, alpha) weight and, for CutMix,
its own box. A sample is thus mixed alike whatever the batch size or the number of processes, which
is why the partner is gathered and augmented by itself rather than taken from a flipped batch as
timm does. With both on, each sample takes one of the two with even odds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .augment import EpochPlan, augmented, batch_indices

_SALT = 0x6D6978  # keeps the mixing draws apart from the epoch plan's


@dataclass(frozen=True)
class MixPlan:
    """Each sample's partner, weight and CutMix box (top, left, height, width) for one epoch; the
    weight of a CutMix sample is the share of its own image that the box leaves."""

    partner: torch.Tensor  # (N,) sample indices
    lam: torch.Tensor  # (N,) float32: the share of the sample's own label in its target
    cut: torch.Tensor  # (N,) bool: CutMix rather than MixUp
    boxes: torch.Tensor  # (N, 4) long


def plan_mix(
    order: torch.Tensor,
    n: int,
    seed: int,
    epoch: int,
    size: tuple[int, int],
    mixup: float | None,
    cutmix: float | None,
) -> MixPlan:
    """The epoch's mixing of n samples visited in ``order``, for images of ``size`` (height, width)
    after cropping; ``mixup`` and ``cutmix`` are the Beta distributions' alphas (None or 0: off)."""
    rng = np.random.default_rng((seed * 1_000_003 + epoch * 7919 + _SALT) % (2**63))
    partner = torch.arange(n)
    partner[order] = order.roll(-1)
    lam_mix = rng.beta(mixup, mixup, n) if mixup else np.ones(n)
    lam_cut = rng.beta(cutmix, cutmix, n) if cutmix else np.ones(n)
    cut = rng.random(n) < 0.5 if mixup and cutmix else np.full(n, bool(cutmix))
    height, width = size
    # A box of (1 - lam) of the area, centred anywhere, clipped to the image (so its true share is
    # recomputed from the clipped box).
    side = np.sqrt(1.0 - lam_cut)
    cy, cx = rng.random(n) * height, rng.random(n) * width
    top, bottom = np.clip(cy - side * height / 2, 0, height), np.clip(cy + side * height / 2, 0, height)
    left, right = np.clip(cx - side * width / 2, 0, width), np.clip(cx + side * width / 2, 0, width)
    top, bottom, left, right = (np.round(v).astype(np.int64) for v in (top, bottom, left, right))
    boxes = np.stack([top, left, bottom - top, right - left], 1)
    lam = np.where(cut, 1.0 - (bottom - top) * (right - left) / (height * width), lam_mix)
    return MixPlan(partner, torch.from_numpy(lam).float(), torch.from_numpy(cut), torch.from_numpy(boxes))


def mix_images(
    x: torch.Tensor, other: torch.Tensor, lam: torch.Tensor, cut: torch.Tensor, boxes: torch.Tensor
) -> torch.Tensor:
    """uint8 batches ``x`` and ``other`` mixed per sample: blended by ``lam`` (MixUp), or with
    ``other`` pasted into each sample's box (CutMix)."""
    h, w = x.shape[2:]
    top, left, height, width = boxes.unbind(1)
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])  # (B, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])  # (B, W)
    box = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]  # (B, 1, H, W)
    weight = lam.view(-1, 1, 1, 1)
    blended = (weight * x.float() + (1 - weight) * other.float()).round_().to(torch.uint8)
    return torch.where(cut.view(-1, 1, 1, 1), torch.where(box, other, x), blended)


def mixed_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    plan: EpochPlan,
    mix: MixPlan,
    rank: int = 0,
    ranks: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(mixed uint8 images, labels, partners' labels, each sample's own share) batches, shuffled and
    augmented by ``plan`` as ``augment.batches`` gives them, the last partial batch dropped."""
    for idx in batch_indices(plan.order, batch_size, True, rank, ranks):
        partner = mix.partner[idx]
        x = mix_images(
            augmented(images, idx, plan), augmented(images, partner, plan), mix.lam[idx], mix.cut[idx],
            mix.boxes[idx],
        )  # fmt: skip
        yield x, labels[idx], labels[partner], mix.lam[idx]
