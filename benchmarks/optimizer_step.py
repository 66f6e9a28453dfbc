"""torch's fused optimizer step against its default loop over the parameters, on the CPU, as one JSON
object: the step alone over each model's parameters, and the training of the two models with the most
weights.

Run as ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/optimizer_step.py [--rounds 5] [--train-rounds 2]``.
``steps``: per model (its parameters for mnist5k's 10 classes) and optimizer (SGD with momentum and
weight decay, AdamW), the median milliseconds of one ``optimizer.step()`` with the loop
(``fused=None``, torch's default on the CPU) and fused, timed round-robin. ``train``: per model,
``cnnlab train --model M --epochs 1`` in-process with the trainer's step fused (``runtime.fused_optimizer``
as shipped) and with the loop, alternating, each run's images/s. The file records ``machine``
(``cnnlab.machine.machine``) and ``command``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

import cnnlab.train.schedule as schedule
from cnnlab.machine import machine
from cnnlab.models import create_model
from cnnlab.train import TrainConfig
from cnnlab.train.loop import fit

STEP_MODELS = ("alexnet", "vgg11_bn", "googlenet", "efficientnet_b0", "resnet20")
TRAIN_MODELS = ("alexnet", "vgg11_bn")  # their recipes: AdamW for AlexNet, SGD for VGG-11
OPTIMIZERS = {  # the recipes' momentum and weight decay; the rate does not change the step's time
    "sgd": lambda params, fused: torch.optim.SGD(params, 0.01, momentum=0.9, weight_decay=5e-4, fused=fused),
    "adamw": lambda params, fused: torch.optim.AdamW(params, 1e-3, weight_decay=0.05, fused=fused),
}
REPEATS = 10  # steps per timing


def step_ms(optimizer: torch.optim.Optimizer) -> float:
    start = time.perf_counter()
    for _ in range(REPEATS):
        optimizer.step()
    return 1000 * (time.perf_counter() - start) / REPEATS


def time_steps(name: str, rounds: int) -> list[dict[str, Any]]:
    """Median ms per step of each optimizer, the loop and the fused step alternating round by round."""
    params = list(create_model(name, num_classes=10, in_chans=1).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    rows = []
    for kind, make in OPTIMIZERS.items():
        optimizers = {"loop": make(params, None), "fused": make(params, True)}
        for optimizer in optimizers.values():
            optimizer.step()  # the state (momentum, moments) is allocated on the first step
        times: dict[str, list[float]] = {label: [] for label in optimizers}
        for _ in range(rounds):
            for label, optimizer in optimizers.items():
                times[label].append(step_ms(optimizer))
        loop, fused = (statistics.median(times[label]) for label in ("loop", "fused"))
        rows.append({"model": name, "params": sum(p.numel() for p in params), "optimizer": kind,
                     "loop_ms": round(loop, 2), "fused_ms": round(fused, 2),
                     "speedup": round(loop / fused, 2)})  # fmt: skip
    return rows


def train_speed(name: str, rounds: int) -> dict[str, Any]:
    """One epoch of ``cnnlab train --model NAME`` per run, the fused step and the loop alternating."""
    shipped = schedule.fused_optimizer
    speeds: dict[str, list[float]] = {"loop": [], "fused": []}
    try:
        for _ in range(rounds):
            for label in speeds:
                schedule.fused_optimizer = shipped if label == "fused" else (lambda device: None)  # type: ignore[assignment]
                with tempfile.TemporaryDirectory() as tmp:
                    result = fit(TrainConfig(model=name, epochs=1, out=f"{tmp}/run"), live=False, quiet=True)
                speeds[label].append(result["images_per_s"])
    finally:
        schedule.fused_optimizer = shipped  # type: ignore[assignment]
    ratio = statistics.median(speeds["fused"]) / statistics.median(speeds["loop"])
    return {"model": name, "loop_images_per_s": speeds["loop"], "fused_images_per_s": speeds["fused"],
            "speedup": round(ratio, 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-rounds", type=int, default=2)
    args = parser.parse_args(argv)
    out = {
        "machine": machine(),
        "command": "benchmarks/optimizer_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "steps": [row for name in STEP_MODELS for row in time_steps(name, args.rounds)],
        "train": [train_speed(name, args.train_rounds) for name in TRAIN_MODELS],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
