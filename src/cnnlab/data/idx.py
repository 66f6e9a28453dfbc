"""MNIST and Fashion-MNIST from LeCun's IDX files, plain or gzipped.

An IDX file is a 4-byte big-endian magic (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values. The header is checked against the file's
exact length, so a truncated or padded file is reported instead of silently misread.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.base import Dataset
from cnnlab.errors import DataError, UnknownNameError

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# name -> (title, sub-folders to look in besides root, where to get the files, classes, hflip)
_SOURCES: dict[str, tuple[str, tuple[str, ...], str, list[str], bool]] = {
    "mnist": (
        "MNIST",
        ("mnist", "MNIST"),
        "https://yann.lecun.com/exdb/mnist/ (often offline; the same files are mirrored at "
        "https://ossci-datasets.s3.amazonaws.com/mnist/)",
        [str(d) for d in range(10)],
        False,  # a mirrored digit is a different glyph (or none)
    ),
    "fashion_mnist": (
        "Fashion-MNIST",
        ("fashion_mnist", "fashion-mnist", "FashionMNIST"),
        "https://github.com/zalando-research/fashionmnist (folder data/fashion)",
        _FASHION_CLASSES,
        True,  # a mirrored shoe is still a shoe
    ),
}


def read_idx(path: Path | str, ndim: int | None = None) -> torch.Tensor:
    """Read a uint8 IDX file (gzipped or not, judged by content) into a tensor of its shape.

    ``ndim``, when given, is the number of dimensions the caller expects (3 for images, 1 for
    labels), so that swapping an image file for a label file is caught at the header.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except FileNotFoundError as e:
        raise DataError(f"IDX file {path} does not exist") from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}; it is corrupt, download it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path} is not an IDX file (bad magic {raw[:4].hex() or 'empty'}); download it again"
        )
    if raw[2] != _UINT8:
        raise DataError(
            f"IDX file {path} has type code 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported"
        )
    dims_count = raw[3]
    if dims_count == 0 or (ndim is not None and dims_count != ndim):
        want = f"0x{0x800 + ndim:08x}" if ndim is not None else "at least one dimension"
        raise DataError(
            f"IDX file {path} has magic 0x{raw[:4].hex()}, expected {want}; wrong or corrupt file"
        )
    header = 4 + 4 * dims_count
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; download it again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims_count))
    expected = math.prod(shape)
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw) - header} bytes of data but its header {shape} needs "
            f"{expected}; it is truncated or corrupt, download it again"
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def _source(name: str) -> tuple[str, tuple[str, ...], str, list[str], bool]:
    key = name.lower().replace("-", "_")
    key = {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist"}.get(key, key)
    if key not in _SOURCES:
        raise UnknownNameError(f"unknown IDX dataset {name!r}; choose one of {', '.join(_SOURCES)}")
    return _SOURCES[key]


def _find(folder: Path, stem: str) -> Path | None:
    """The file ``stem`` or ``stem.gz`` in ``folder`` (plain first), or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx(root: Path | str, name: str = "mnist") -> Dataset:
    """Load MNIST or Fashion-MNIST from the four IDX files as a `Dataset` of (N, 1, rows, cols).

    The files may sit in ``root`` or in ``root/<name>/``, ``root/<name>/raw/`` (torchvision's layout,
    ``MNIST/raw`` and ``FashionMNIST/raw`` included). Sub-folders named after the dataset are tried
    before ``root`` itself, so a data folder holding one dataset loose is not mistaken for the other.
    """
    title, subfolders, where, classes, hflip = _source(name)
    root = Path(root).expanduser()
    folders = [root / sub / raw for sub in subfolders for raw in ("raw", "")] + [root]
    folders = [f for f in dict.fromkeys(folders) if f.is_dir()]
    best: dict[str, Path | None] = {}
    best_folder = root
    for folder in folders:
        found = {key: _find(folder, stem) for key, stem in _FILES.items()}
        if sum(p is not None for p in found.values()) > sum(p is not None for p in best.values()):
            best, best_folder = found, folder
        if all(p is not None for p in found.values()):
            break
    missing = [_FILES[key] for key in _FILES if best.get(key) is None]
    if not folders:
        raise DataError(f"{title} folder {root} does not exist; put the four IDX files there, from {where}")
    if missing:
        looked = ", ".join(str(f) for f in folders)
        raise DataError(
            f"{title} file(s) {', '.join(f'{m}[.gz]' for m in missing)} missing in {best_folder} "
            f"(looked in {looked}); get them from {where}"
        )
    paths: dict[str, Path] = {k: p for k, p in best.items() if p is not None}
    tensors = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], ndim=3)
        labels = read_idx(paths[f"{split}_labels"], ndim=1)
        if len(labels) != len(images):
            raise DataError(
                f"{paths[f'{split}_labels']} has {len(labels)} labels but {paths[f'{split}_images']} has "
                f"{len(images)} images; the files do not belong together"
            )
        if len(labels) and int(labels.max()) >= len(classes):
            raise DataError(f"{paths[f'{split}_labels']} has labels above {len(classes) - 1}; wrong file")
        tensors[split] = (images.unsqueeze(1), labels.to(torch.int64))
    if tensors["train"][0].shape[2:] != tensors["test"][0].shape[2:]:
        raise DataError(f"{title} train and test images in {best_folder} differ in size; mixed-up files")
    key = "mnist" if title == "MNIST" else "fashion_mnist"
    (train_x, train_y), (test_x, test_y) = tensors["train"], tensors["test"]
    return Dataset(key, train_x, train_y, test_x, test_y, classes=list(classes), hflip=hflip)
