"""Batched augmentation and the batch iterator: no per-sample Python in the hot loop.

Randomness is a function of (seed, epoch, sample index) alone: the permutation and every sample's
crop offset and flip are drawn once per epoch for the whole dataset from a generator seeded by
(seed, epoch), and a batch only looks them up. The same sample therefore gets the same crop whatever
the batch size, the number of processes, or the step a run was resumed from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

T = TypeVar("T")
_END = object()


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
    # Random resized crops instead of padded ones: each sample's (top, left, height, width) box in
    # the stored image, resized to size x size.
    boxes: torch.Tensor | None = None
    size: int | None = None


def plan_epoch(
    n: int,
    seed: int,
    epoch: int,
    padding: int,
    hflip: bool,
    shuffle: bool = True,
    resized: tuple[int, int, int] | None = None,
    subset: torch.Tensor | None = None,
) -> EpochPlan:
    """The epoch's plan; with ``resized`` = (height, width, size), random resized crops of images
    stored at height x width, to size x size, replace the padded crops. ``subset``: the indices the
    epoch visits (the training part of a validation split); crops and flips are still drawn for all n
    samples, so each sample's own draws do not depend on the split."""
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    if subset is not None:
        order = subset[order[order < len(subset)]] if shuffle else subset
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    if resized is None:  # drawn after the rest, so that a plan with padded crops stays as it was
        return EpochPlan(order, offsets, flips, padding)
    height, width, size = resized
    return EpochPlan(order, offsets, flips, 0, resized_crop_boxes(n, height, width, g), size)


def resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    g: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> torch.Tensor:
    """(n, 4) boxes (top, left, height, width) as ImageNet training draws them: a ``scale`` share of
    the area, a log-uniform aspect ``ratio``, the first of ``tries`` draws that fits, else the
    largest centred box within the ratios."""
    area = height * width * torch.empty(n, tries).uniform_(*scale, generator=g)
    aspect = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g).exp_()
    w, h = (area * aspect).sqrt_().round_(), (area / aspect).sqrt_().round_()
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    fall_w = min(width, round(height * ratio[1])) if width / height > ratio[1] else width
    fall_h = min(height, round(width / ratio[0])) if width / height < ratio[0] else height
    found = fits.any(1)
    w, h = torch.where(found, w, float(fall_w)), torch.where(found, h, float(fall_h))
    corner = torch.rand(n, 2, generator=g)
    top = (corner[:, 0] * (height - h + 1)).floor_()
    left = (corner[:, 1] * (width - w + 1)).floor_()
    top, left = torch.where(found, top, (height - h) // 2), torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, h, w], 1).long()


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box resized (bilinear) to size x size, mirrored where ``flips`` says: one affine
    sampling grid per image, the whole batch in one call. Without antialiasing: a box shrinks by at
    most the stored side over the crop's (146 to 128 at the recommended sizes), where it hardly
    aliases."""
    n, c, height, width = images.shape
    top, left, h, w = boxes.to(torch.float32).unbind(1)
    # The grid maps an output pixel's centre, in -1..1, to the input's: box centre plus half its extent.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flips, -w, w) / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre size x size square of every image, as a view: a memory-mapped image is read only
    when a batch is gathered from it."""
    h, w = images.shape[2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, :, top : top + size, left : left + size]


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
    rank: int = 0,
    ranks: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches; with a plan, shuffled and augmented by it. Data-parallel,
    each of ``ranks`` processes gathers only its contiguous slice (``rank``) of every global batch."""
    order = plan.order if plan is not None else torch.arange(len(labels))
    for idx in batch_indices(order, batch_size, drop_last, rank, ranks):
        yield augmented(images, idx, plan), labels[idx]


def batch_indices(
    order: torch.Tensor, batch_size: int, drop_last: bool = False, rank: int = 0, ranks: int = 1
) -> Iterator[torch.Tensor]:
    """The sample indices of each batch, in ``order``; data-parallel, this ``rank``'s contiguous slice
    of every global batch."""
    n = len(order)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        if ranks > 1:
            part = len(idx) // ranks
            idx = idx[rank * part : (rank + 1) * part]
        yield idx


def augmented(images: torch.Tensor, idx: torch.Tensor, plan: EpochPlan | None) -> torch.Tensor:
    """The images at ``idx``, cropped and flipped as the plan draws them for those samples."""
    x = images[idx]
    if plan is not None and plan.boxes is not None:
        return resized_crop(x, plan.boxes[idx], plan.flips[idx], plan.size)  # type: ignore[arg-type]
    if plan is not None:
        return hflip(random_crop(x, plan.offsets[idx], plan.padding), plan.flips[idx])
    return x


def prefetched(items: Iterable[T]) -> Iterator[T]:
    """The items, each prepared by a background thread while the one before is used: a batch is
    gathered (from a memory-mapped store, page by page) and augmented during the previous step.

    The thread runs its torch operations on one thread of its own, as the pin-memory thread of torch's
    DataLoader does: with OpenMP the count is per thread, and a team of the worker's own would keep
    spinning between batches on the cores the training step needs."""
    iterator = iter(items)
    threads = torch.get_num_threads()  # also settles this thread's own count before the worker's change
    with ThreadPoolExecutor(1, initializer=_one_thread) as pool:
        # Once the worker has run a task its own count is one for good; the default that threads
        # started later copy is then put back.
        pool.submit(int).result()
        torch.set_num_threads(threads)
        pending = pool.submit(next, iterator, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, iterator, _END)
            yield item  # type: ignore[misc]


def _one_thread() -> None:
    torch.get_num_threads()  # a thread's first call copies the process's count: have it before the change
    torch.set_num_threads(1)
