"""Training speed with glibc's malloc as it comes and with ``runtime.keep_freed_memory`` (what the
``cnnlab`` command sets), as one JSON object.

Run as ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/allocator.py [--rounds 2]``. The setting holds
for a whole process, so every measurement is a fresh process, the two allocators alternating round by
round. ``allocator.bench``: per model at its recipe's input size, ``cnnlab.bench.bench`` images/s of
the default training step and of ``--naive`` in the same process. ``allocator.train``: per model, the
images/s of one epoch of ``cnnlab train --model M --epochs 1`` on mnist5k. The file records ``machine``
(``cnnlab.machine.machine``) and ``command``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from cnnlab.machine import machine

BENCH = (
    ("alexnet", (1, 64, 64)),
    ("vgg11_bn", (1, 32, 32)),
    ("googlenet", (1, 32, 32)),
    ("resnet20", (1, 28, 28)),
)
TRAIN = ("alexnet", "resnet20")
BATCH = 128
ALLOCATORS = ("system", "kept")  # glibc as it comes; keep_freed_memory()

PRELUDE = "import json, tempfile; from cnnlab import runtime\nif {kept}: assert runtime.keep_freed_memory()\n"
BENCH_CODE = """from cnnlab.bench import bench
rows = [bench({name!r}, "train", {batch}, {size}, naive=naive, steps=4, warmup=1, min_seconds=0.5)
        for naive in (False, True)]
print(json.dumps([row["images_per_s"] for row in rows]))
"""
TRAIN_CODE = """from cnnlab.train import TrainConfig
from cnnlab.train.loop import fit
with tempfile.TemporaryDirectory() as tmp:
    result = fit(TrainConfig(model={name!r}, epochs=1, out=tmp + "/run"), live=False, quiet=True)
print(json.dumps(result["images_per_s"]))
"""


def measure(code: str, kept: bool) -> Any:
    """What a fresh process running ``code`` prints, as JSON."""
    done = subprocess.run([sys.executable, "-c", PRELUDE.format(kept=kept) + code], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    bench: list[dict[str, Any]] = []
    for name, size in BENCH:
        row: dict[str, Any] = {"model": name, "input": list(size), "batch_size": BATCH}
        row |= {f"{a}_{step}": [] for a in ALLOCATORS for step in ("default", "naive")}
        for _ in range(args.rounds):
            for allocator in ALLOCATORS:
                code = BENCH_CODE.format(name=name, batch=BATCH, size=size)
                default, naive = measure(code, allocator == "kept")
                row[f"{allocator}_default"].append(default)
                row[f"{allocator}_naive"].append(naive)
        bench.append(row)
    train = []
    for name in TRAIN:
        speeds: dict[str, list[float]] = {a: [] for a in ALLOCATORS}
        for _ in range(args.rounds):
            for allocator in ALLOCATORS:
                speeds[allocator].append(measure(TRAIN_CODE.format(name=name), allocator == "kept"))
        train.append({"model": name, **{f"{a}_images_per_s": v for a, v in speeds.items()}})
    out = {
        "machine": machine(),
        "command": "benchmarks/allocator.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "allocator": {"bench": bench, "train": train},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
