"""Accuracy and time of the default ``cnnlab train`` over seeds, and of candidate recipes beside it, as one
JSON object.

Run as ``.venv/bin/python benchmarks/time_to_accuracy.py [--seeds 0 1 2] [--precisions bf16 fp32]
[--candidate LABEL "FLAGS"]...``; each run is ``cnnlab train --seed S --precision P --no-progress`` (plus a
candidate's flags, in the default precision) into a temporary directory, one after another, and the
result's test accuracy and training time are kept, with the first epoch (and the seconds of training up
to its end) at which the test accuracy reached each of ``THRESHOLDS``. The output is the shape of
``results/*-time-to-accuracy.json``: ``machine`` (``cnnlab.machine.machine``), ``command``, ``runs`` per
label (a precision, or a candidate's label), ``flags`` per candidate and ``summary`` (mean and standard
deviation of the accuracy, mean training seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cnnlab.machine import machine

COMMAND = "cnnlab train --seed S --precision P --no-progress"
THRESHOLDS = (0.985, 0.988)


def reached(out: Path) -> dict[str, Any]:
    """The first epoch whose test accuracy reached each threshold, and the training seconds up to its
    end (None where the run never did), from the run's metrics.csv."""
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    found: dict[str, Any] = {}
    for threshold in THRESHOLDS:
        seconds = 0.0
        found[f"{threshold:g}"] = None
        for row in rows:
            seconds += float(row["seconds"])
            if float(row["test_acc"]) >= threshold:
                found[f"{threshold:g}"] = {"epoch": int(row["epoch"]), "seconds": round(seconds, 2)}
                break
    return found


def run_once(seed: int, flags: list[str], out: Path) -> dict[str, Any]:
    """One training run; its ``result.json`` figures, the command's wall time and the thresholds."""
    start = time.perf_counter()
    args = ["train", "--seed", str(seed), *flags, "--no-progress", "--out", str(out)]
    subprocess.run([sys.executable, "-m", "cnnlab", *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    result = json.loads((out / "result.json").read_text())
    return {
        "seed": seed,
        "test_acc": result["test_acc"],
        "epochs": result["epochs"],
        "train_time_s": round(result["train_time_s"], 2),
        "wall_s": round(wall, 2),
        "reached": reached(out),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="*", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument(
        "--candidate", nargs=2, action="append", default=[], metavar=("LABEL", "FLAGS"), help="repeatable"
    )
    args = parser.parse_args(argv)
    flags = {p: ["--precision", p] for p in args.precisions}
    flags.update({label: shlex.split(text) for label, text in args.candidate})
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in flags.items():
            runs[label] = [run_once(seed, extra, Path(tmp) / f"{label}-{seed}") for seed in args.seeds]
    summary = {}
    for label, rows in runs.items():
        accs = [row["test_acc"] for row in rows]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        seconds = statistics.mean(row["train_time_s"] for row in rows)
        summary[label] = {
            "mean": round(statistics.mean(accs), 4),
            "std": round(std, 4),
            "seconds": round(seconds, 2),
        }
    record = {
        "machine": machine(),
        "command": COMMAND,
        "flags": {label: " ".join(f) for label, f in flags.items()},
        "runs": runs,
        "summary": summary,
    }
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
