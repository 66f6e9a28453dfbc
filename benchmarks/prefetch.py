"""Training speed with the batches prepared by a background thread that runs torch on one thread (what
``data.augment.prefetched`` does), by one that runs it on the process's count, and on the training
thread itself, as one JSON object.

Run as ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/prefetch.py [--rounds 3]``. Every measurement
is a fresh process that keeps freed memory as the ``cnnlab`` command does and trains
``cnnlab train --model M --epochs 2`` on mnist5k; the three ways alternate round by round. ``one``
is the library as it is; ``shared`` and ``none`` replace the epoch's ``prefetched`` with a thread pool
that leaves the worker's count alone and with no thread at all. Per model, the images/s of each run
(``fit``'s result) and ``machine`` (``cnnlab.machine.machine``) and ``command``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from cnnlab.machine import machine

MODELS = ("resnet20", "alexnet")
WAYS = ("one", "shared", "none")

PRELUDE = """import json, tempfile
from concurrent.futures import ThreadPoolExecutor
from cnnlab import runtime
from cnnlab.train import epoch
assert runtime.keep_freed_memory()

def shared(items):
    iterator = iter(items)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, iterator, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, iterator, None)
            yield item

way = {way!r}
if way == "shared":
    epoch.prefetched = shared
elif way == "none":
    epoch.prefetched = iter
"""
TRAIN_CODE = """from cnnlab.train import TrainConfig
from cnnlab.train.loop import fit
with tempfile.TemporaryDirectory() as tmp:
    result = fit(TrainConfig(model={name!r}, epochs=2, out=tmp + "/run"), live=False, quiet=True)
print(json.dumps(result["images_per_s"]))
"""


def measure(name: str, way: str) -> float:
    """The images/s of a fresh process's training of ``name`` with the batches prepared ``way``."""
    code = PRELUDE.format(way=way) + TRAIN_CODE.format(name=name)
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for name in MODELS:
        speeds: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                speeds[way].append(measure(name, way))
        rows.append({"model": name, **{f"{way}_images_per_s": v for way, v in speeds.items()}})
    out = {
        "machine": machine(),
        "command": "benchmarks/prefetch.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "prefetch": rows,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
