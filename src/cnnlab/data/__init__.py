"""Datasets as uint8 tensors in memory: one entry point, ``load``, for names and paths alike."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError, UnknownNameError
from .base import Dataset, check_memory

DEFAULT_ROOT = Path(os.environ.get("CNNLAB_DATA", "data"))
CHUNK_BYTES = 256 * 2**20


def _mnist5k(root: Path, download: bool, image_size: int | None) -> Dataset:
    from .mnist5k import load_mnist5k

    return load_mnist5k()


def _cifar(variant: str) -> Callable[[Path, bool, int | None], Dataset]:
    def load_it(root: Path, download: bool, image_size: int | None) -> Dataset:
        from .cifar import load_cifar

        return load_cifar(root, variant=variant, download=download)

    return load_it


def _idx(name: str) -> Callable[[Path, bool, int | None], Dataset]:
    def load_it(root: Path, download: bool, image_size: int | None) -> Dataset:
        from .idx import load_idx

        return load_idx(root, name=name)

    return load_it


DATASETS: dict[str, Callable[[Path, bool, int | None], Dataset]] = {
    "mnist5k": _mnist5k,
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "mnist": _idx("mnist"),
    "fashion_mnist": _idx("fashion_mnist"),
}
ALIASES = {
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "fashion-mnist": "fashion_mnist",
    "fmnist": "fashion_mnist",
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def load(
    name_or_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_size: int | None = None,
    strict: bool = False,
    resize_side: int | None = None,
    interpolation: str = "bilinear",
) -> Dataset:
    """Load a dataset by name (``mnist5k``, ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``)
    or by path (an image folder, a CIFAR archive or folder, a folder of MNIST IDX files).

    ``resize_side`` and ``interpolation`` read an image folder as ImageNet models are evaluated:
    shorter side to ``resize_side``, then the centre ``image_size`` square (see ``load_folder``).

    Named datasets other than mnist5k live under ``root`` (default ``./data`` or ``$CNNLAB_DATA``);
    CIFAR is downloaded there, with its checksum verified, when missing and ``download`` is true.
    An image folder skips, with a warning, an image it cannot read, or with ``strict`` raises a
    DataError for it; CIFAR and IDX files are always checked strictly (one bad file spoils the set).
    """
    key = str(name_or_path)
    name = ALIASES.get(key.lower(), key.lower())
    if name in DATASETS:
        dataset = DATASETS[name](Path(root) if root is not None else DEFAULT_ROOT, download, image_size)
        return resize(dataset, image_size) if image_size else dataset
    path = Path(key).expanduser()
    try:
        exists = path.exists()
    except OSError as e:  # a name the file system refuses outright, e.g. longer than it allows
        raise DataError(f"cannot use {key[:80]!r} as a dataset path: {e.strerror or e}") from None
    if exists:
        dataset = _load_path(path, image_size, strict, resize_side, interpolation)
        return resize(dataset, image_size) if image_size else dataset
    close = difflib.get_close_matches(name, list(DATASETS) + list(ALIASES), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"unknown dataset {key!r}: not a dataset name ({', '.join(list_datasets())}) "
        f"nor an existing path.{hint}"
    )


def _load_path(
    path: Path,
    image_size: int | None,
    strict: bool = False,
    resize_side: int | None = None,
    interpolation: str = "bilinear",
) -> Dataset:
    """Recognize a path's format by its content: CIFAR archive or folder, IDX files, else images."""
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if path.is_file():
        if path.name.startswith("cifar-100"):
            from .cifar import load_cifar

            return load_cifar(path, variant="cifar100")
        if path.name.startswith("cifar-10"):
            from .cifar import load_cifar

            return load_cifar(path, variant="cifar10")
        raise DataError(f"{path} is a file cnnlab cannot read as a dataset: give a folder or a CIFAR archive")
    if names & {"cifar-10-batches-py", "data_batch_1", "cifar-10-python.tar.gz"}:
        from .cifar import load_cifar

        return load_cifar(path, variant="cifar10")
    if names & {"cifar-100-python", "cifar-100-python.tar.gz"} or {"train", "test", "meta"} <= names:
        from .cifar import load_cifar

        return load_cifar(path, variant="cifar100")
    if any(n.startswith("train-images-idx3-ubyte") for n in names):
        from .idx import load_idx

        return load_idx(path, name="fashion_mnist" if "fashion" in path.name.lower() else "mnist")
    from .folder import load_folder

    return load_folder(
        path, image_size=image_size, strict=strict, resize_side=resize_side, interpolation=interpolation
    )


def resize(dataset: Dataset, size: int, chunk: int = 1024) -> Dataset:
    """The dataset with every image resized to ``size`` x ``size`` (bilinear, antialiased), still uint8.

    Lets a model with a large minimum input (AlexNet, VGG, EfficientNet) train on small images such
    as the 28x28 digits. Statistics are recomputed from the resized training images.
    """
    if size < 1:
        raise DataError(f"--image-size must be positive, got {size}")
    if dataset.image_size == (size, size):
        return dataset
    n, c = len(dataset.train_labels) + len(dataset.test_labels), dataset.in_chans
    h, w = dataset.image_size
    # Chunks are resized in float32 at both sizes: a few hundred MB at most, whatever the size.
    float_bytes = 4 * c * (h * w + size * size)
    chunk = max(1, min(chunk, CHUNK_BYTES // float_bytes))
    check_memory(n * c * size * size + chunk * float_bytes, f"{dataset.name} at {size}x{size} ({n:,} images)")

    def resized(images: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk].float()
            y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
        return out

    return Dataset(
        name=dataset.name,
        train_images=resized(dataset.train_images),
        train_labels=dataset.train_labels,
        test_images=resized(dataset.test_images),
        test_labels=dataset.test_labels,
        classes=dataset.classes,
        hflip=dataset.hflip,
    )


__all__ = ["DEFAULT_ROOT", "Dataset", "list_datasets", "load", "resize"]
