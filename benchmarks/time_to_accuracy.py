"""Accuracy and time of the default ``cnnlab train`` over seeds, in bf16 and fp32, as one JSON object.

Run as ``.venv/bin/python benchmarks/time_to_accuracy.py [--seeds 0 1 2] [--precisions bf16 fp32]``;
each run is ``cnnlab train --seed S --precision P --no-progress`` into a temporary directory, one after
another, and the result's test accuracy and training time are kept. The output is the shape of
``results/*-time-to-accuracy.json``: ``machine`` (``cnnlab.bench.machine``), ``command``, ``runs`` per
precision and ``summary`` (mean and standard deviation of the accuracy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cnnlab.bench import machine

COMMAND = "cnnlab train --seed S --precision P --no-progress"


def run_once(seed: int, precision: str, out: Path) -> dict[str, Any]:
    """One default training run; its ``result.json`` figures and the command's wall time."""
    start = time.perf_counter()
    args = ["train", "--seed", str(seed), "--precision", precision, "--no-progress", "--out", str(out)]
    subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    result = json.loads((out / "result.json").read_text())
    return {
        "seed": seed,
        "test_acc": result["test_acc"],
        "train_time_s": round(result["train_time_s"], 2),
        "wall_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions:
            runs[precision] = [
                run_once(seed, precision, Path(tmp) / f"{precision}-{seed}") for seed in args.seeds
            ]
    summary = {}
    for precision, rows in runs.items():
        accs = [row["test_acc"] for row in rows]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        summary[precision] = {"mean": round(statistics.mean(accs), 4), "std": round(std, 4)}
    record = {"machine": machine(), "command": COMMAND, "runs": runs, "summary": summary}
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
