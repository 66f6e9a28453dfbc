"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

The batch files are pickles, and a pickle can run arbitrary code when loaded. They are therefore read
with an unpickler that can build nothing but what a genuine CIFAR file contains (dicts, lists, bytes,
strings, ints and one uint8 ndarray), so a tampered archive fails with a `DataError` instead of
running code. Everything else that can be wrong with a file also ends in a `DataError` naming it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.base import Dataset
from cnnlab.data.download import download as download_file
from cnnlab.data.download import safe_extract_tar
from cnnlab.errors import DataError, UnknownNameError


@dataclass(frozen=True)
class _Variant:
    """Where one CIFAR variant comes from and how its files are laid out."""

    name: str
    title: str
    url: str
    md5: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_VARIANTS: dict[str, _Variant] = {
    "cifar10": _Variant(
        name="cifar10",
        title="CIFAR-10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": _Variant(
        name="cifar100",
        title="CIFAR-100",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}

_PIXELS = 3 * 32 * 32


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name, mapped to the objects they stand for.

    Pickles written by numpy 1 (the official files) name ``numpy.core.multiarray``; numpy 2 moved it
    to ``numpy._core.multiarray``. Both names map to whichever this numpy has, and nothing is imported
    by name from the pickle, so the deprecated ``numpy.core`` shim is never touched.
    """
    try:
        from numpy._core.multiarray import _reconstruct  # type: ignore[import-not-found]
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _CifarUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """An unpickler that refuses every global except numpy's array reconstruction.

    ``find_class`` is the single point through which a pickle reaches callables (GLOBAL,
    STACK_GLOBAL, INST, OBJ and the copyreg extension opcodes all go through it), so refusing here
    means a hostile file cannot call ``os.system``, ``eval`` or anything else.

    It is the pure-Python unpickler (as fast here: a batch is one big bytes object): the C one keeps
    its memo in an array sized by the largest index a file names, so a corrupt 6 kB file saying
    ``LONG_BINPUT 275870730`` made it zero 4 GB of memory; this one keeps a dict.
    """

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise DataError(
                f"refusing to load {self.source}: it asks to run code ({module}.{name}); "
                "this is not a genuine CIFAR file, delete it and download the official archive"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"refusing to load {self.source}: it asks for an external object; not a CIFAR file")


def _unpickle(path: Path) -> dict[str, Any]:
    """Load one CIFAR pickle safely; keys come back as ``str`` whether stored as str or bytes."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(
            f"CIFAR file {path} is missing, so {path.parent} is incomplete: delete that folder and "
            "load again from the archive (or let cnnlab download it)"
        ) from e
    except Exception as e:  # a malformed pickle can raise almost anything; none of it is a bug here
        # The message may quote raw pickle bytes, newlines included; the CLI prints one line.
        detail = " ".join(str(e).split())
        raise DataError(f"cannot read CIFAR file {path}: {type(e).__name__}: {detail}; it is corrupt") from e
    if not isinstance(obj, dict):
        raise DataError(f"cannot read CIFAR file {path}: it holds a {type(obj).__name__}, not a dict")
    return {_text(k): v for k, v in obj.items()}


def _text(value: Any) -> Any:
    """Decode bytes (Python 2 str read with ``encoding="bytes"``-style pickles) to str."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one batch file, after validating both."""
    batch = _unpickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"CIFAR file {path} has no {key!r} entry; it is not a {label_key!r} batch")
    data, labels = batch["data"], batch[label_key]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"CIFAR file {path} has malformed data ({type(data).__name__} {shape}); "
            f"expected uint8 (N, {_PIXELS}); the file is corrupt"
        )
    try:
        label_array = np.asarray(labels)
    except Exception as e:
        raise DataError(f"CIFAR file {path} has malformed labels: {' '.join(str(e).split())}") from e
    if label_array.ndim != 1 or label_array.dtype.kind not in "iu" or len(label_array) != len(data):
        raise DataError(
            f"CIFAR file {path} has {len(data)} images but labels of shape {label_array.shape} "
            f"({label_array.dtype}); the file is corrupt"
        )
    if len(label_array) and (label_array.min() < 0 or label_array.max() >= num_classes):
        raise DataError(f"CIFAR file {path} has labels outside 0..{num_classes - 1}; the file is corrupt")
    # Each row is three 32x32 planes (R, G, B), each row-major: exactly NCHW after a reshape.
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(label_array.astype(np.int64))


def _read_names(path: Path, v: _Variant) -> list[str]:
    """The class names from a meta file, checked to be the right number of strings."""
    meta = _unpickle(path)
    names = meta.get(v.names_key)
    if not isinstance(names, list) or len(names) != v.num_classes:
        raise DataError(f"CIFAR meta file {path} has no list of {v.num_classes} {v.names_key!r}")
    names = [_text(n) for n in names]
    if not all(isinstance(n, str) for n in names):
        raise DataError(f"CIFAR meta file {path} has class names that are not strings")
    return names


def _variant(name: str) -> _Variant:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _VARIANTS:
        raise UnknownNameError(f"unknown CIFAR variant {name!r}; choose one of {', '.join(_VARIANTS)}")
    return _VARIANTS[key]


def _extract(archive: Path, into: Path, v: _Variant) -> Path:
    """Safely extract ``archive`` and move its top folder into ``into``; return that folder.

    Extraction goes to a hidden temporary folder first and the finished top folder is renamed into
    place, so an interrupted extraction never leaves a half-filled folder that looks complete.
    """
    target = into / v.folder
    if target.is_dir():
        return target
    try:
        is_tar = tarfile.is_tarfile(archive)
    except (OSError, EOFError, zlib.error) as e:  # EOFError: a gzip stream cut short
        raise DataError(f"cannot read {archive}: {e}; it is truncated or corrupt, download it again") from e
    if not is_tar:
        raise DataError(f"{archive} is not a tar archive; expected the {v.title} python version {v.url}")
    try:
        tmp = Path(tempfile.mkdtemp(dir=into, prefix=".extract-"))
    except OSError as e:
        raise DataError(f"cannot extract {archive} into {into}: {e}; choose a writable folder") from e
    try:
        safe_extract_tar(archive, tmp)
        if not (tmp / v.folder).is_dir():
            raise DataError(
                f"{archive} has no {v.folder}/ folder; it is not the {v.title} python version ({v.url})"
            )
        os.replace(tmp / v.folder, target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return target


def _locate(root: Path, v: _Variant, download: bool) -> Path:
    """The extracted folder for ``v``, extracting or downloading the archive as needed."""
    if root.is_file():  # (c) the archive itself
        return _extract(root, root.parent, v)
    if root.is_dir():
        if root.name == v.folder or (root / v.meta).is_file():  # (b) the extracted folder
            return root
        if (root / v.folder).is_dir():  # (a) a folder holding the extracted folder
            return root / v.folder
        if (root / v.archive).is_file():  # (d) a folder holding the archive
            return _extract(root / v.archive, root, v)
    if not download:
        raise DataError(
            f"{v.title} not found in {root}: download {v.url} (md5 {v.md5}) and put it in {root}, "
            "or let cnnlab download it (without --no-download; download=True in Python)"
        )
    archive = download_file(v.url, root / v.archive, v.md5)
    return _extract(archive, root, v)


def load_cifar(root: Path | str, variant: str = "cifar10", download: bool = False) -> Dataset:
    """Load CIFAR-10 or CIFAR-100 (fine labels) as a `Dataset`.

    ``root`` may be the extracted folder, a folder that contains it, the ``.tar.gz`` archive, or a
    folder that contains the archive (extracted safely next to it, once). With ``download=True`` a
    missing archive is fetched from the official site into ``root`` and checked against its MD5.
    """
    v = _variant(variant)
    folder = _locate(Path(root).expanduser(), v, download)
    classes = _read_names(folder / v.meta, v)
    splits = []
    for files in (v.train, v.test):
        parts = [_read_batch(folder / f, v.label_key, v.num_classes) for f in files]
        splits.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
    (train_x, train_y), (test_x, test_y) = splits
    return Dataset(v.name, train_x, train_y, test_x, test_y, classes=classes, hflip=True)
