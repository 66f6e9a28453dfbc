"""Datasets as uint8 tensors in memory: one entry point, ``load``, for names and paths alike."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError, UnknownNameError
from .base import Dataset, check_memory
from .store import MANIFEST

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


def source_kind(name_or_path: str | os.PathLike[str]) -> str:
    """What ``load`` reads: "named" for a dataset's name, else what the path holds ("store",
    "folder", "cifar10", "cifar100", "idx")."""
    key = str(name_or_path).lower()
    if ALIASES.get(key, key) in DATASETS:
        return "named"
    return _format(Path(str(name_or_path)).expanduser())


def load(
    name_or_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_size: int | None = None,
    strict: bool = False,
    resize_side: int | None = None,
    interpolation: str = "bilinear",
    cache: bool = False,
) -> Dataset:
    """Load a dataset by name (``mnist5k``, ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``)
    or by path (an image folder, a packed store, a CIFAR archive or folder, a folder of MNIST IDX
    files). A store is memory-mapped (store.py); with ``cache`` an image folder is packed once into
    a store under ``root`` and mapped from then on (cache.py), else decoded into memory.

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
        cache_root = (Path(root) if root is not None else DEFAULT_ROOT) if cache else None
        dataset = _load_path(path, image_size, strict, resize_side, interpolation, cache_root)
        return resize(dataset, image_size) if image_size else dataset
    close = difflib.get_close_matches(name, list(DATASETS) + list(ALIASES), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"unknown dataset {key!r}: not a dataset name ({', '.join(list_datasets())}) "
        f"nor an existing path.{hint}"
    )


def _format(path: Path) -> str:
    """What a path holds, recognized by its content: "store", "cifar10", "cifar100", "idx", "folder"."""
    if path.is_file():
        if path.name.startswith("cifar-100"):
            return "cifar100"
        if path.name.startswith("cifar-10"):
            return "cifar10"
        raise DataError(f"{path} is a file cnnlab cannot read as a dataset: give a folder or a CIFAR archive")
    if not path.is_dir():  # a device or a socket: load_folder refuses it in its own words
        return "folder"
    names = {p.name for p in path.iterdir()}
    # A manifest.json alone is no store: many datasets ship one beside their class folders.
    if MANIFEST in names and any(n.endswith(".u8") for n in names):
        return "store"
    if names & {"cifar-10-batches-py", "data_batch_1", "cifar-10-python.tar.gz"}:
        return "cifar10"
    if names & {"cifar-100-python", "cifar-100-python.tar.gz"} or {"train", "test", "meta"} <= names:
        return "cifar100"
    if any(n.startswith("train-images-idx3-ubyte") for n in names):
        return "idx"
    return "folder"


def image_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of images (rather than a store, CIFAR or IDX files)."""
    return path.is_dir() and _format(path) == "folder"


def _load_path(
    path: Path,
    image_size: int | None,
    strict: bool = False,
    resize_side: int | None = None,
    interpolation: str = "bilinear",
    cache: Path | None = None,
) -> Dataset:
    kind = _format(path)
    if kind == "store":
        from .store import load_store

        return load_store(path, image_size, resize_side)
    if kind in ("cifar10", "cifar100"):
        from .cifar import load_cifar

        return load_cifar(path, variant=kind)
    if kind == "idx":
        from .idx import load_idx

        return load_idx(path, name="fashion_mnist" if "fashion" in path.name.lower() else "mnist")
    if cache is not None and resize_side is None:
        from .cache import cached_folder

        return cached_folder(path, cache, image_size, strict)
    from .folder import load_folder

    return load_folder(
        path, image_size=image_size, strict=strict, resize_side=resize_side, interpolation=interpolation
    )


def centre_cropped(dataset: Dataset, size: int) -> Dataset:
    """The dataset with the centre size x size square of every image, as views: a memory-mapped
    store is read only where a batch is gathered."""
    from .augment import centre_crop

    if min(dataset.image_size) < size:
        raise DataError(f"{dataset.name}'s images are smaller than the {size}x{size} centre to cut from them")
    return dataclasses.replace(
        dataset,
        train_images=centre_crop(dataset.train_images, size),
        test_images=centre_crop(dataset.test_images, size),
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


__all__ = [
    "DEFAULT_ROOT",
    "Dataset",
    "centre_cropped",
    "image_folder",
    "list_datasets",
    "load",
    "resize",
    "source_kind",
]
