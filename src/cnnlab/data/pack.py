"""Packing: a dataset decoded once, by parallel worker processes, into a store (store.py).

An image folder is read as `load_folder` reads it (the same classes, split, channels, sizes and
pixels), but each chunk of files is decoded by a worker process straight into the store's array
file, so packing scales with the cores and never holds the dataset in memory. Any other dataset
cnnlab reads is loaded as usual and written out.

A pack writes into a hidden folder beside the store and renames it into place after the manifest is
written: killed at any point, it leaves no store or a complete one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import DataError
from . import folder as folders
from .base import Dataset
from .store import MANIFEST, SPLITS, Manifest, Split, images_file, labels_file, sha256_file, usable_path

CHUNK = 256  # images a worker decodes per task: enough that handing out tasks costs nothing
MIN_PER_WORKER = 2048  # fewer images a worker would decode start no process: one is decoded here
TEST_FRACTION = 0.2  # load_folder's: a folder without a test split is split the same way
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# --out under a folder one may not write or create, or under a file.
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOENT)


class NoSpaceError(DataError):
    """The store does not fit on its disk."""


T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Task:
    """One chunk of one split: its files are decoded into the rows from ``start`` of ``path``."""

    start: int
    files: list[Path]
    path: Path  # the split's image file
    shape: tuple[int, int, int]
    side: int | None  # the side each image is resized to; None: kept as it is


@dataclass
class Decoded:
    """What a worker sends back: never pixels, which it wrote into the file itself."""

    kept: list[int]  # positions in the chunk of the files decoded, written in this order from start
    histogram: np.ndarray  # (C, 256) counts of each value in each channel of the kept images
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _failure(path: Path, error: Exception) -> str:
    """What is wrong with a file PIL cannot read; an error of the file system stops the pack."""
    if isinstance(error, OSError) and error.errno is not None:
        folders.bad_file(path, error, strict=True)  # raises
    return f"{type(error).__name__}: {error}"


def _headers(files: list[Path]) -> list[tuple[str, tuple[int, int]] | str]:
    """Each file's mode and size, or what is wrong with it."""
    out: list[tuple[str, tuple[int, int]] | str] = []
    for path in files:
        try:
            with Image.open(path) as im:
                out.append((im.mode, im.size))
        except folders.IMAGE_ERRORS as e:
            out.append(_failure(path, e))
    return out


def _decode(task: Task) -> Decoded:
    """Decode a chunk into its rows, the readable files first and in order."""
    c, h, w = task.shape
    offset = task.start * c * h * w
    rows = np.memmap(task.path, dtype=np.uint8, mode="r+", offset=offset, shape=(len(task.files), c, h, w))
    out = Decoded([], np.zeros((c, 256), dtype=np.int64))
    for i, path in enumerate(task.files):
        try:
            array = folders.decode(path, c == 1, task.side)
            if array.shape[:2] != (h, w):
                raise ValueError(f"decoded size {array.shape[1]}x{array.shape[0]} differs from its header")
        except folders.IMAGE_ERRORS as e:
            out.failed.append((path, _failure(path, e)))
            continue
        row = rows[len(out.kept)]
        row[...] = array.reshape(h, w, c).transpose(2, 0, 1)
        for channel in range(c):  # a histogram is the fastest exact route to the sums
            out.histogram[channel] += np.bincount(row[channel].ravel(), minlength=256)
        out.kept.append(i)
    rows.flush()
    return out


def _map(
    pool: Executor | None,
    fn: Callable[[T], R],
    items: Sequence[T],
    counts: list[int],
    progress: Progress,
    what: str,
) -> list[R]:
    """fn over items in the pool's processes (or here), results in the items' order, with a progress
    bar counting images as the workers finish."""
    bar = progress.add_task(what, total=sum(counts))
    if pool is None:
        results = []
        for item, n in zip(items, counts, strict=True):
            results.append(fn(item))
            progress.advance(bar, n)
        return results
    futures = {pool.submit(fn, item): n for item, n in zip(items, counts, strict=True)}
    for future in as_completed(futures):
        future.result()  # a worker's error stops the pack here
        progress.advance(bar, futures[future])
    return [f.result() for f in futures]


@contextmanager
def _pool(workers: int) -> Iterator[Executor | None]:
    """Worker processes, or None for one. Spawned, not forked: a fork would copy this process's torch
    threads half-held; and gone with the pool, unlike a fork server, which would stay for the whole
    training that asked for the pack."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


def _report(failed: list[tuple[Path, str]], strict: bool) -> None:
    for path, message in failed:
        if strict:
            raise DataError(
                f"cannot read image {path}: {message}; delete or replace it, or pack without --strict"
            )
        warnings.warn(f"cannot read image {path}: {message}; skipping it", stacklevel=4)


Scan = tuple[Path, "Path | None", list[str], list[tuple[Path, int, bool]]]  # folder.scan_splits's


@dataclass
class Layout:
    """A folder as it will be packed: classes, each split's (file, label) pairs, and the image shape."""

    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    shape: tuple[int, int, int]
    side: int | None
    skipped: list[Path]


def _layout(
    root: Path, scanned: Scan, size: int | None, strict: bool, pool: Executor | None, progress: Progress
) -> Layout:
    """The headers are read first (cheap) to choose channels and size, and the split drawn, exactly as
    `load_folder` does."""
    _, test_dir, classes, files = scanned
    chunks = [[f for f, _, _ in files[i : i + CHUNK]] for i in range(0, len(files), CHUNK)]
    headers = [
        h
        for chunk in _map(pool, _headers, chunks, list(map(len, chunks)), progress, "headers")
        for h in chunk
    ]
    failed = [(f, h) for (f, _, _), h in zip(files, headers, strict=True) if isinstance(h, str)]
    _report(failed, strict)
    readable = [(e, h) for e, h in zip(files, headers, strict=True) if not isinstance(h, str)]
    if not readable:
        raise DataError(f"no readable images in {root}")
    shape, side = folders.choose_shape({h[0] for _, h in readable}, {h[1] for _, h in readable}, size)
    entries = [e for e, _ in readable]
    if test_dir is None:
        entries = folders.draw_split(entries, TEST_FRACTION, 0)
    splits = {s: [(f, y) for f, y, test in entries if test == (s == "test")] for s in SPLITS}
    return Layout(classes, splits, shape, side, [f for f, _ in failed])


def _reserve(partial: Path, sizes: dict[str, int]) -> None:
    """Create the image files at their full size, the disk's blocks allocated now: a disk that is too
    small fails here, in one line, and not after an hour of decoding."""
    need = sum(sizes.values())
    free = shutil.disk_usage(partial).free
    if need > free:
        raise NoSpaceError(
            f"the store needs {need / 1e9:.2f} GB and {partial.parent} has {free / 1e9:.2f} GB free"
        )
    allocate = getattr(os, "posix_fallocate", None)  # not on macOS
    for split, nbytes in sizes.items():
        with open(partial / images_file(split), "wb") as f:
            try:
                if allocate is None or not nbytes:
                    raise OSError(errno.EOPNOTSUPP, "no posix_fallocate")
                allocate(f.fileno(), 0, nbytes)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                f.truncate(nbytes)  # a file system that cannot reserve blocks: a sparse file


def _compact(path: Path, tasks: list[Task], results: list[Decoded], row: int) -> int:
    """Close the gaps that files which failed to decode left at the end of their chunks; the rows kept."""
    kept = 0
    with open(path, "r+b") as f:
        for task, result in zip(tasks, results, strict=True):
            n = len(result.kept)
            if kept != task.start and n:
                f.seek(task.start * row)
                block = f.read(n * row)
                f.seek(kept * row)
                f.write(block)
            kept += n
        f.truncate(kept * row)
        f.flush()
        os.fsync(f.fileno())
    return kept


def _stats(histogram: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale from value counts, as channel_stats computes them."""
    values = np.arange(256, dtype=np.int64)
    n = max(int(histogram[0].sum()), 1)
    mean = (histogram @ values) / (255.0 * n)
    std = np.sqrt(np.maximum((histogram @ (values * values)) / (255.0**2 * n) - mean * mean, 1e-12))
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def _write_labels(partial: Path, split: str, labels: np.ndarray) -> str:
    data = labels.astype("<i8").tobytes()
    with open(partial / labels_file(split), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def _split_entry(partial: Path, split: str, labels: np.ndarray, classes: int) -> Split:
    counts = np.bincount(labels, minlength=classes).tolist() if len(labels) else [0] * classes
    labels_sha = _write_labels(partial, split, labels)
    return Split(len(labels), counts, sha256_file(partial / images_file(split)), labels_sha)


def _pack_folder(
    root: Path, partial: Path, size: int | None, workers: int, strict: bool, progress: Progress
) -> tuple[Manifest, int]:
    """The folder packed into ``partial``; its manifest, and the worker processes it took."""
    scanned = folders.scan_splits(root)
    # Starting the workers costs about what decoding a thousand small images does.
    workers = min(workers, -(-len(scanned[3]) // MIN_PER_WORKER))
    with _pool(workers) as pool:
        layout = _layout(root, scanned, size, strict, pool, progress)
        row = math.prod(layout.shape)
        _reserve(partial, {s: len(entries) * row for s, entries in layout.splits.items()})
        tasks = {
            s: [
                Task(
                    start,
                    [f for f, _ in entries[start : start + CHUNK]],
                    partial / images_file(s),
                    layout.shape,
                    layout.side,
                )
                for start in range(0, len(entries), CHUNK)
            ]
            for s, entries in layout.splits.items()
        }
        flat = [t for s in SPLITS for t in tasks[s]]
        decoded = _map(pool, _decode, flat, [len(t.files) for t in flat], progress, "decoding")
    failed = [f for d in decoded for f in d.failed]
    _report(failed, strict)
    results = {"train": decoded[: len(tasks["train"])], "test": decoded[len(tasks["train"]) :]}
    splits = {}
    for s in SPLITS:
        _compact(partial / images_file(s), tasks[s], results[s], row)
        entries = layout.splits[s]
        labels = np.array(
            [entries[t.start + i][1] for t, d in zip(tasks[s], results[s], strict=True) for i in d.kept],
            dtype=np.int64,
        )
        splits[s] = _split_entry(partial, s, labels, len(layout.classes))
    for i, count in enumerate(splits["train"].class_counts):
        if count == 0:
            raise DataError(f"class {layout.classes[i]!r} of {root} has no readable training images")
    mean, std = _stats(sum(d.histogram for d in results["train"]))
    skipped = [str(p) for p in layout.skipped + [f for f, _ in failed]]
    return Manifest(
        name=root.resolve().name, source=str(root.resolve()), classes=layout.classes, shape=layout.shape,
        mean=mean, std=std, hflip=True, splits=splits, skipped=skipped,
    ), workers  # fmt: skip


def _pack_dataset(data: Dataset, source: str, partial: Path) -> Manifest:
    """A dataset already in memory (CIFAR, MNIST, mnist5k, ...) written out as it is."""
    images = {s: getattr(data, f"{s}_images").contiguous() for s in SPLITS}
    _reserve(partial, {s: x.numel() for s, x in images.items()})
    splits = {}
    for s in SPLITS:
        with open(partial / images_file(s), "r+b") as f:
            f.write(memoryview(images[s].numpy()).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        splits[s] = _split_entry(partial, s, getattr(data, f"{s}_labels").numpy(), data.num_classes)
    c, h, w = data.train_images.shape[1:]
    return Manifest(
        data.name, source, list(data.classes), (c, h, w), data.mean, data.std, data.hflip, splits, []
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(host: str, pid: int) -> bool:
    """Whether the pack that left a hidden folder may still be running: one of another host (a shared
    file system) is assumed to be."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def _partial(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to pack into; removed on any failure, and the leftovers of a
    pack that was killed are removed by the next one."""
    if out.exists():
        raise DataError(f"{out} exists already: remove it or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.parent / f".{out.name}.partial-{socket.gethostname()}-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
    except OSError as e:  # under a folder one may not write, or under a file
        if e.errno not in NOT_WRITABLE:
            raise
        raise DataError(f"cannot write the store {out}: {e.strerror}") from None
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        host, _, pid = stale.name.split(".partial-", 1)[1].rpartition("-")
        if pid.isdigit() and not _alive(host, int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _publish(partial: Path, manifest: Manifest, out: Path) -> None:
    """The manifest last, then the folder renamed into place: a store with a manifest is complete."""
    with open(partial / MANIFEST, "w") as f:
        json.dump(manifest.to_json(), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(partial)
    try:
        os.rename(partial, out)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        raise DataError(f"{out} was written by another pack meanwhile; this one is dropped") from None
    _fsync_dir(out.parent)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=quiet, transient=True,
    )  # fmt: skip


def pack(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: int | None = None,
    workers: int | None = None,
    strict: bool = False,
    root: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Decode ``source`` (an image folder, or any dataset name or path cnnlab reads) into a store at
    ``out``: images resized to ``size`` as `load` would (a folder: shorter side, then the centre
    square), by ``workers`` processes (default: one per core). Returns what was packed."""
    from . import image_folder, load

    target, started = Path(out).expanduser(), time.perf_counter()
    if size is not None and size < 1:
        raise DataError(f"--size must be a positive number of pixels, got {size}")
    workers = workers if workers is not None else default_workers()
    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    path = usable_path(Path(str(source)).expanduser(), "a dataset path")
    usable_path(target, "a store")
    try:
        with _partial(target) as partial, _progress(quiet) as progress:
            if image_folder(path):
                manifest, workers = _pack_folder(path, partial, size, workers, strict, progress)
            else:
                workers = 1
                data = load(source, root=root, image_size=size, strict=strict)
                manifest = _pack_dataset(data, str(source), partial)
            _publish(partial, manifest, target)
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise NoSpaceError(f"the disk of {target} is full ({e.strerror}); nothing was written") from None
    seconds = time.perf_counter() - started
    images = sum(s.count for s in manifest.splits.values())
    return {
        "store": str(target), "images": images, "train": manifest.splits["train"].count,
        "test": manifest.splits["test"].count, "image": "x".join(map(str, manifest.shape)),
        "skipped": len(manifest.skipped), "workers": workers, "seconds": round(seconds, 3),
        "images_per_s": round(images / seconds, 1),
    }  # fmt: skip


def write_store(data: Dataset, out: str | os.PathLike[str], source: str) -> Path:
    """``data``, in memory or itself mapped, written as a store at ``out``."""
    target = Path(out).expanduser()
    with _partial(target) as partial:
        _publish(partial, _pack_dataset(data, source, partial), target)
    return target
