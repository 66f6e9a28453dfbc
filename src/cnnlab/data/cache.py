"""The cache of image folders: a folder given to `cnnlab train --data` is packed once (pack.py) under
the data root and memory-mapped on every later run with the same files and image size."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import warnings
from pathlib import Path

from ..errors import DataError
from . import folder as folders
from .base import Dataset
from .pack import TEST_FRACTION, NoSpaceError, pack
from .store import is_store, load_store, read_manifest

# Under the data root, hidden: a data root that is itself an image folder must not grow a class.
CACHE = ".packed"
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def cache_key(folder: Path, files: list[folders.Entry], image_size: int | None, strict: bool) -> str:
    """A folder's files (names, sizes, modification times) and how they are to be packed, hashed."""
    digest = hashlib.sha256(f"{image_size} {strict}\n".encode())
    prefix = len(str(folder))  # every file was found under it: its name relative to the folder follows
    for path, _, _ in files:
        name = str(path)
        try:
            st = os.stat(name)
        except FileNotFoundError:
            raise DataError(f"{path} disappeared while {folder} was read; run again") from None
        digest.update(f"{name[prefix:]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()[:16]


def _mapped(store: Path) -> Dataset | None:
    """The cached store, or None where there is none or it is damaged (it is removed: the cache is
    cnnlab's own, and the folder can be packed again)."""
    if not is_store(store):
        return None
    try:
        data = load_store(store)
    except DataError:
        shutil.rmtree(store, ignore_errors=True)
        return None
    skipped = len(read_manifest(store).skipped)
    if skipped:
        warnings.warn(
            f"{skipped} unreadable images of {data.name} were skipped when it was packed", stacklevel=3
        )
    return data


def _in_memory(folder: Path, image_size: int | None, strict: bool, why: str) -> Dataset:
    warnings.warn(f"{why}: decoding {folder} in memory", stacklevel=3)
    return folders.load_folder(folder, image_size=image_size, strict=strict)


def cached_folder(
    folder: Path, root: Path, image_size: int | None, strict: bool, quiet: bool = False
) -> Dataset:
    """An image folder packed once under ``root``/.packed and memory-mapped: a later run with the same
    files and size maps the store instead of decoding. Processes that ask at once pack it once. Where
    the cache cannot be written, or the store would not fit on its disk, the folder is decoded into
    memory as before."""
    folders.check_arguments(folder, image_size, TEST_FRACTION, "bilinear")
    files = folders.scan_splits(folder)[3]
    store = root / CACHE / f"{folder.resolve().name}-{cache_key(folder, files, image_size, strict)}"
    data = _mapped(store)
    if data is not None:
        return data
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        lock = open(store.parent / f".{store.name}.lock", "w")  # noqa: SIM115 (held while packing)
    except OSError as e:
        if e.errno not in NOT_WRITABLE:
            raise
        return _in_memory(folder, image_size, strict, f"cannot write a cache under {root} ({e.strerror})")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _mapped(store)  # another process may have packed it while this one waited
        if data is not None:
            return data
        try:
            pack(folder, store, size=image_size, strict=strict, quiet=quiet)
        except NoSpaceError as e:
            return _in_memory(folder, image_size, strict, str(e))
    return load_store(store)
