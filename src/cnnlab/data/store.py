"""A packed store: a dataset decoded once into fixed-size uint8 arrays on disk, read by memory mapping.

    STORE/manifest.json         what the arrays hold: classes, counts, shape, mean and std, checksums
    STORE/train-images.u8       (N, C, H, W) uint8, raw, row after row
    STORE/train-labels.i64      (N,) int64, little-endian
    STORE/test-images.u8, STORE/test-labels.i64

The arrays carry no header: the manifest is their only description, and a reader checks the files'
sizes against it before mapping them. Pages of the images are read when a batch touches them, so a
store larger than memory trains with the memory of a batch (``load_store``). `cnnlab data pack`
writes stores (pack.py); the manifest is written last and the folder renamed into place, so a store
that has a manifest is complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .augment import centre_crop
from .base import Dataset

FORMAT = "cnnlab-store"
VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test")
HASH_BLOCK = 16 * 2**20


def images_file(split: str) -> str:
    return f"{split}-images.u8"


def labels_file(split: str) -> str:
    return f"{split}-labels.i64"


@dataclass(frozen=True)
class Split:
    count: int
    class_counts: list[int]
    images_sha256: str
    labels_sha256: str


@dataclass(frozen=True)
class Manifest:
    """manifest.json, checked field by field: a damaged or foreign file is one line, never a crash."""

    name: str
    source: str
    classes: list[str]
    shape: tuple[int, int, int]  # (C, H, W) of every image
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool
    splits: dict[str, Split]
    skipped: list[str]  # files that could not be decoded when packing

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "name": self.name, "source": self.source,
            "classes": self.classes, "shape": list(self.shape), "mean": list(self.mean),
            "std": list(self.std), "hflip": self.hflip, "skipped": self.skipped,
            "splits": {
                name: {"count": s.count, "class_counts": s.class_counts, "images_sha256": s.images_sha256,
                       "labels_sha256": s.labels_sha256}
                for name, s in self.splits.items()
            },
        }  # fmt: skip


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    # bool is an int to Python; a count that is true or false is damage all the same.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DataError(f"{where}: {key!r} is missing or not a {kind.__name__}; the store is damaged")
    return value


def _ints(values: Any, key: str, where: str, low: int = 0) -> list[int]:
    if not isinstance(values, list) or not all(type(v) is int and v >= low for v in values):
        raise DataError(f"{where}: {key!r} must be a list of whole numbers >= {low}; the store is damaged")
    return values


def _floats(values: Any, key: str, n: int, where: str) -> tuple[float, ...]:
    ok = isinstance(values, list) and len(values) == n
    if not ok or not all(type(v) in (int, float) and math.isfinite(v) for v in values):
        raise DataError(f"{where}: {key!r} must be {n} finite numbers; the store is damaged")
    return tuple(float(v) for v in values)


def _split(raw: Any, name: str, classes: int, where: str) -> Split:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: split {name!r} is missing or not an object; the store is damaged")
    count = _field(raw, "count", int, f"{where} ({name})")
    counts = _ints(raw.get("class_counts"), "class_counts", f"{where} ({name})")
    if len(counts) != classes or sum(counts) != count or count < 0:
        raise DataError(f"{where}: split {name!r} counts {count} images, its classes add up otherwise")
    hashes = [_field(raw, key, str, f"{where} ({name})") for key in ("images_sha256", "labels_sha256")]
    return Split(count, counts, *hashes)


def usable_path(path: Path, what: str) -> Path:
    """``path``, once the file system has agreed to look it up: a name longer than it allows is one
    line, not an OSError."""
    try:
        path.exists()
    except OSError as e:
        raise DataError(f"cannot use {str(path)[:80]!r} as {what}: {e.strerror or e}") from None
    return path


def read_manifest(store: Path) -> Manifest:
    """The store's manifest, every field checked; DataError names what is wrong."""
    path = usable_path(store, "a store") / MANIFEST
    if not store.is_dir():
        raise DataError(f"no store at {store}: it is not a folder")
    if not path.is_file():
        raise DataError(
            f"{store} is not a complete store (no {MANIFEST}): an interrupted pack leaves this; "
            "delete it and run cnnlab data pack again"
        )
    try:
        raw = json.loads(path.read_bytes())
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, an integer of 5,000 digits
        raise DataError(f"{path} is not valid JSON ({type(e).__name__}); the store is damaged") from None
    where = str(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"{path} is not the manifest of a cnnlab store")
    if raw.get("version") != VERSION:
        raise DataError(
            f"{path} is version {raw.get('version')!r} of the store format; this cnnlab reads {VERSION}"
        )
    classes = _field(raw, "classes", list, where)
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise DataError(f"{where}: 'classes' must be distinct names; the store is damaged")
    shape = _ints(raw.get("shape"), "shape", where, low=1)
    if len(shape) != 3 or shape[0] not in (1, 3) or max(shape) > 2**16:
        raise DataError(f"{where}: 'shape' must be [C, H, W] with C 1 or 3; the store is damaged")
    splits = _field(raw, "splits", dict, where)
    skipped = _field(raw, "skipped", list, where)
    std = _floats(raw.get("std"), "std", shape[0], where)
    if min(std) <= 0:
        raise DataError(f"{where}: 'std' must be positive; the store is damaged")
    return Manifest(
        name=_field(raw, "name", str, where),
        source=_field(raw, "source", str, where),
        classes=classes,
        shape=tuple(shape),  # type: ignore[arg-type]
        mean=_floats(raw.get("mean"), "mean", shape[0], where),
        std=std,
        hflip=_field(raw, "hflip", bool, where),
        splits={name: _split(splits.get(name), name, len(classes), where) for name in SPLITS},
        skipped=[str(s) for s in skipped],
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _check_sizes(store: Path, m: Manifest) -> None:
    """Every array file has exactly the bytes its manifest describes: a truncated store is refused."""
    for name, split in m.splits.items():
        for file, want in (
            (images_file(name), split.count * m.row_bytes),
            (labels_file(name), 8 * split.count),
        ):
            path = store / file
            got = path.stat().st_size if path.is_file() else None
            if got != want:
                found = "is missing" if got is None else f"has {got:,} bytes"
                raise DataError(
                    f"{path} {found}, the manifest says {want:,}: the store is damaged; pack it again"
                )


def _labels(store: Path, m: Manifest, split: str) -> torch.Tensor:
    """A split's labels, read whole (8 bytes an image) and checked against the manifest."""
    path = store / labels_file(split)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != m.splits[split].labels_sha256:
        raise DataError(
            f"{path} does not match its checksum in the manifest: the store is damaged; pack it again"
        )
    labels = torch.from_numpy(np.frombuffer(data, dtype="<i8").astype(np.int64))
    if len(labels) and (labels.min() < 0 or labels.max() >= len(m.classes)):
        raise DataError(f"{path} holds labels outside 0..{len(m.classes) - 1}: the store is damaged")
    if torch.bincount(labels, minlength=len(m.classes)).tolist() != m.splits[split].class_counts:
        raise DataError(f"{path}: the labels' class counts disagree with the manifest; the store is damaged")
    return labels


def _images(store: Path, m: Manifest, split: str) -> torch.Tensor:
    """A split's images, memory-mapped read-only: pages are read when a batch touches them and count
    as the page cache's memory, not the process's own. Not copy-on-write: Linux counts a private
    writable mapping against the memory up front, and refuses one larger than the memory."""
    count = m.splits[split].count
    if count == 0:
        return torch.empty((0, *m.shape), dtype=torch.uint8)
    array = np.memmap(store / images_file(split), dtype=np.uint8, mode="r", shape=(count, *m.shape))
    with warnings.catch_warnings():  # torch warns that it cannot write to it: nothing in cnnlab does
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def load_store(store: str | Path, image_size: int | None = None, resize_side: int | None = None) -> Dataset:
    """A packed store as a `Dataset` whose images are memory-mapped from disk.

    ``image_size`` must be the size the store was packed at, unless ``resize_side`` names the stored
    shorter side: then the centre ``image_size`` square of each image is taken (ImageNet's evaluation,
    for a model trained on random resized crops of the stored images). Sizes, label checksums and
    counts are checked here; the images' checksums only by ``verify_store``, since reading every page
    of a large store would cost what mapping it saves.
    """
    root = Path(store)
    m = read_manifest(root)
    _check_sizes(root, m)
    h, w = m.shape[1:]
    train, test = _images(root, m, "train"), _images(root, m, "test")
    if image_size is not None and (h, w) != (image_size, image_size):
        if resize_side != min(h, w) or image_size > min(h, w):
            raise DataError(
                f"{root} was packed at {h}x{w}, not {image_size}x{image_size}: pack it again with "
                f"--size {image_size}, or train without --image-size"
            )
        train, test = centre_crop(train, image_size), centre_crop(test, image_size)
    if m.splits["train"].count == 0:
        raise DataError(f"{root} has no training images")
    return Dataset(
        m.name, train, _labels(root, m, "train"), test, _labels(root, m, "test"),
        classes=list(m.classes), hflip=m.hflip, mean=m.mean, std=m.std,
    )  # fmt: skip


def is_store(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def store_info(store: str | Path) -> dict[str, Any]:
    """What `cnnlab data info` prints: the manifest's content and the bytes on disk."""
    root = Path(store)
    m = read_manifest(root)
    _check_sizes(root, m)
    return {
        "store": str(root), "name": m.name, "source": m.source, "classes": len(m.classes),
        "image": "x".join(map(str, m.shape)),
        "train": m.splits["train"].count, "test": m.splits["test"].count,
        "bytes": sum((root / f(s)).stat().st_size for s in SPLITS for f in (images_file, labels_file)),
        "mean": list(m.mean), "std": list(m.std), "hflip": m.hflip, "skipped": len(m.skipped),
    }  # fmt: skip


def verify_store(store: str | Path) -> dict[str, Any]:
    """Every file read back and checked against the manifest's checksums; DataError names the first
    one that differs."""
    root = Path(store)
    m = read_manifest(root)
    _check_sizes(root, m)
    for split in SPLITS:
        _labels(root, m, split)
        path = root / images_file(split)
        if sha256_file(path) != m.splits[split].images_sha256:
            raise DataError(
                f"{path} does not match its checksum in the manifest: the store is damaged; pack it again"
            )
    return {**store_info(root), "verified": True}
