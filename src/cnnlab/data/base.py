"""The in-memory dataset that every loader returns and every consumer reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from ..errors import DataError


@dataclass
class Dataset:
    """A labelled image dataset held as uint8 tensors in memory.

    Images are ``uint8`` of shape ``(N, C, H, W)``, labels ``int64`` of shape ``(N,)`` with values in
    ``range(len(classes))``. ``mean`` and ``std`` are per channel on the 0..1 scale, taken from the
    training images, so normalization can be fused into the first step of the model's input.
    ``hflip`` says whether a horizontal flip keeps the label's meaning (not for digits or letters).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    hflip: bool = True
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(
                    f"{split} images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(f"{split} labels must be int64 of shape ({images.shape[0]},)")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError("train and test images must share channels and size")
        if not self.mean:
            self.mean, self.std = channel_stats(self.train_images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[2:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        c, h, w = self.train_images.shape[1:]
        return (
            f"Dataset({self.name!r}, train={len(self.train_labels)}, test={len(self.test_labels)}, "
            f"image={c}x{h}x{w}, classes={self.num_classes})"
        )


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0..1 scale."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    n = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def stratified_split(
    labels: torch.Tensor, test_fraction: float, seed: int = 0, at_least_one: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a fixed stratified split, (kept, held out), each sorted: round(test_fraction * n)
    of each class of n images are held out, at least one where ``at_least_one`` and the class has two.

    Deterministic for a given ``seed``; each class keeps at least one sample.
    """
    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(labels).tolist():  # sorted: the draws do not depend on the labels' order
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = min(len(idx) - 1, max(int(at_least_one), round(len(idx) * test_fraction)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values


def available_memory() -> int | None:
    """Bytes of memory the system can still give, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str) -> None:
    """Refuse in one line, before allocating, a dataset that would not fit in memory: torch would
    otherwise end in a raw allocation error, or the system would start swapping."""
    free = available_memory()
    if free is not None and nbytes > 0.9 * free:
        raise DataError(
            f"{what} would take {nbytes / 1e9:.1f} GB of memory, more than the {free / 1e9:.1f} GB "
            "available; choose a smaller --image-size or use fewer images"
        )
