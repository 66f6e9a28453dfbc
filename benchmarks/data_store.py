"""Packed stores: packing in parallel, training from a memory-mapped store, and the folder cache.

Run as ``.venv/bin/python benchmarks/data_store.py > results/DATE-MACHINE-data-store.json``. It writes
about 6 GB under ``--work`` (default a temporary folder, removed at the end). Three parts (``--parts``):

``pack``: a folder of ``--images`` generated JPEGs (photograph-like sizes, 400-600 by 300-450 pixels,
with smooth gradients and noise) is decoded three ways, in ``--rounds`` interleaved rounds, the best
of each kept: a plain loop in one process over the first ``--decode-sample`` files (what one core
decodes: ``folder.decode`` at the size packing uses), ``cnnlab.data.pack`` with one worker, and with
two. Targets: two workers at least 1.7x one, and at least 80% of twice the plain loop's rate.

``first_step``: ``cnnlab train --data FOLDER`` in a fresh process, timed from its start to the line it
prints before its first step; first with an empty data root (it packs the folder), then twice more
(they map the cached store). Target: the second at least 10x sooner.

``mmap``: a store of at least ``--store-gb`` GB of 3x146x146 images is written and read back once
(``verify_store``, which also warms the page cache); then, each in a fresh process, resnet18 trains
``--steps`` steps of batch ``--batch-size`` on random resized crops at 128 px (``train_epoch``, the
trainer's own step and batch pipeline), from the store and from 1,000 images of the same size in
memory. Targets: data time at most 5% of the step time from the store, and RssAnon at most 1 GB above
the in-memory run's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data import folder as folders
from cnnlab.data.base import Dataset
from cnnlab.data.pack import pack, write_store
from cnnlab.data.store import verify_store
from cnnlab.machine import machine

CLASSES = 10
SIDE = 146  # the stored side of the mmap part: 128-pixel crops are 0.875 of it
CROP = 128


def _jpeg(args: tuple[Path, int]) -> None:
    from PIL import Image

    path, seed = args
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(400, 601)), int(rng.integers(300, 451))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b, c = rng.uniform(0.1, 1.0, 3)
    base = np.stack([(a * x + b * y) % 256, (c * y) % 256, (b * x + a * y) % 256], -1)
    pixels = (base + rng.normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_folder(root: Path, images: int) -> list[Path]:
    jobs = []
    for i in range(images):
        folder = root / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:06d}.jpg", i))
    with Pool(os.cpu_count()) as pool:
        pool.map(_jpeg, jobs, chunksize=64)
    return [p for p, _ in jobs]


def part_pack(folder: Path, files: list[Path], work: Path, rounds: int, sample: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"decode_one_process": [], "pack_1_worker": [], "pack_2_workers": []}
    for r in range(rounds):
        start = time.perf_counter()
        for path in files[:sample]:
            folders.decode(path, False, folders.DEFAULT_SIZE)
        times["decode_one_process"].append(sample / (time.perf_counter() - start))
        for workers in (1, 2):
            out = work / f"pack-{workers}-{r}"
            result = pack(folder, out, workers=workers, quiet=True)
            assert result["workers"] == workers, result
            times[f"pack_{workers}_worker{'s' if workers > 1 else ''}"].append(result["images_per_s"])
            shutil.rmtree(out)
    best = {k: max(v) for k, v in times.items()}
    return {
        "images": len(files), "decode_sample": sample, "rounds": times, "images_per_s": best,
        "two_over_one": best["pack_2_workers"] / best["pack_1_worker"],
        "two_over_twice_decode": best["pack_2_workers"] / (2 * best["decode_one_process"]),
    }  # fmt: skip


def _until_first_step(folder: Path, root: Path, out: Path) -> float:
    """Seconds from starting `cnnlab train` to the line it prints just before its first step."""
    command = [sys.executable, "-m", "cnnlab", "train", "--data", str(folder), "--data-root", str(root)]
    command += ["--epochs", "1", "--no-progress", "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("training "):
                return time.perf_counter() - start
        raise RuntimeError(f"cnnlab train ended with status {proc.wait()} before its first step")
    finally:
        proc.kill()
        proc.wait()


def part_first_step(folder: Path, work: Path) -> dict[str, Any]:
    root = work / "data-root"
    first = _until_first_step(folder, root, work / "run-1")
    later = [_until_first_step(folder, root, work / f"run-{i}") for i in (2, 3)]
    return {"first_s": first, "later_s": later, "first_over_second": first / max(later)}


def write_big_store(out: Path, gigabytes: float) -> int:
    """A store of random 3xSIDExSIDE images of at least ``gigabytes`` GB, written through the same
    function `cnnlab data pack` ends in, from arrays mapped from a scratch file."""
    row = 3 * SIDE * SIDE
    train, test = math.ceil(gigabytes * 1e9 / row), 1000
    scratch = out.parent / "scratch.u8"
    array = np.memmap(scratch, dtype=np.uint8, mode="w+", shape=(train + test, 3, SIDE, SIDE))
    rng = np.random.default_rng(0)
    for start in range(0, train + test, 2048):
        stop = min(start + 2048, train + test)
        array[start:stop] = rng.integers(0, 256, (stop - start, 3, SIDE, SIDE), dtype=np.uint8)
    array.flush()
    labels = torch.from_numpy(rng.integers(0, CLASSES, train + test))
    images = torch.from_numpy(np.memmap(scratch, dtype=np.uint8, mode="c", shape=array.shape))
    data = Dataset(
        "random", images[:train], labels[:train], images[train:], labels[train:],
        classes=[f"c{i}" for i in range(CLASSES)], mean=(0.5,) * 3, std=(0.29,) * 3,
    )  # fmt: skip
    write_store(data, out, "benchmarks/data_store.py")
    scratch.unlink()
    return train + test


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def train_one(source: str, steps: int, batch_size: int) -> dict[str, Any]:
    """resnet18 for ``steps`` steps on random resized crops, from a store or from 1,000 images in memory."""
    from cnnlab import create_model
    from cnnlab.data.augment import Normalize, plan_epoch
    from cnnlab.data.store import load_store
    from cnnlab.runtime import precision_name, resolve_precision
    from cnnlab.train.epoch import Optimization, train_epoch
    from cnnlab.train.progress import TrainProgress

    torch.manual_seed(0)
    if source == "memory":
        n = 1000
        data = Dataset(
            "memory", torch.randint(0, 256, (n, 3, SIDE, SIDE), dtype=torch.uint8), torch.arange(n) % CLASSES,
            torch.zeros(1, 3, SIDE, SIDE, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64),
            classes=[f"c{i}" for i in range(CLASSES)], mean=(0.5,) * 3, std=(0.29,) * 3,
        )  # fmt: skip
    else:
        data = load_store(source)
    device = torch.device("cpu")
    dtype = resolve_precision("auto", device)
    model = create_model("resnet18", num_classes=CLASSES).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    opt = Optimization(
        optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        torch.amp.GradScaler("cpu", enabled=False), 0.01,
    )  # fmt: skip
    plan = plan_epoch(len(data.train_labels), 0, 1, 0, True, resized=(SIDE, SIDE, CROP))
    # The in-memory set is smaller than the steps take: its order repeats, as epochs would.
    needed = (2 + steps) * batch_size
    plan = dataclasses.replace(plan, order=plan.order.repeat(-(-needed // len(plan.order))))
    normalize = Normalize(data.mean, data.std)
    rows = []
    with TrainProgress(1, live=False, quiet=True) as progress:
        for part, count in (("warm-up", 2), ("timed", steps)):
            order = plan.order[len(rows) * batch_size : (len(rows) + count) * batch_size]
            start = time.perf_counter()
            _, _, seen, data_s = train_epoch(
                model, data, dataclasses.replace(plan, order=order), normalize, opt, batch_size, 0.0, device,
                dtype, progress, 1, torch.channels_last,
            )  # fmt: skip
            rows += [part] * count
            seconds = time.perf_counter() - start
    return {
        "source": "store" if source != "memory" else "memory", "train_images": len(data.train_labels),
        "steps": steps, "batch_size": batch_size, "precision": precision_name(dtype), "seconds": seconds,
        "data_seconds": data_s, "data_fraction": data_s / seconds, "images_per_s": seen / seconds,
        "rss_anon_mb": rss_anon_mb(),
    }  # fmt: skip


def _in_process(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout)


def part_mmap(work: Path, gigabytes: float, steps: int, batch_size: int) -> dict[str, Any]:
    store = work / "store"
    images = write_big_store(store, gigabytes)
    start = time.perf_counter()
    info = verify_store(store)
    verify_s = time.perf_counter() - start
    args = ["--steps", str(steps), "--batch-size", str(batch_size)]
    runs = {
        who: _in_process("--train-one", src, *args)
        for who, src in (("store", str(store)), ("memory", "memory"))
    }
    return {
        "store_bytes": info["bytes"], "images": images, "image": info["image"], "crop": CROP,
        "verify_s": verify_s, "runs": runs,
        "rss_anon_over_memory_mb": runs["store"]["rss_anon_mb"] - runs["memory"]["rss_anon_mb"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["pack", "first_step", "mmap"])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--decode-sample", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store-gb", type=float, default=4.2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        print(json.dumps(train_one(args.train_one, args.steps, args.batch_size)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="cnnlab-store-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "machine": machine()}
    try:
        if {"pack", "first_step"} & set(args.parts):
            folder = work / "jpegs"
            files = make_folder(folder, args.images)
            if "pack" in args.parts:
                result["pack"] = part_pack(folder, files, work, args.rounds, args.decode_sample)
            if "first_step" in args.parts:
                result["first_step"] = part_first_step(folder, work)
        if "mmap" in args.parts:
            result["mmap"] = part_mmap(work, args.store_gb, args.steps, args.batch_size)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
