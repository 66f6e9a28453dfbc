"""Does channels-last win for training? The measurement behind ``channels_last_default`` (runtime.py).

ResNet-18, batch 16, 3x224x224 by default (or MODEL BATCH CxHxW), one training step at a time, in
fp32 and bf16, NCHW and channels-last: the four set-ups are built once in one process and timed
round-robin, one step each per round, so a load that comes and goes on a shared machine hits all
four alike. Run it as

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/channels_last.py [--json] [ROUNDS [MODEL BATCH CxHxW]]

and it prints the median milliseconds per step of each set-up and the channels-last speed-up; with
``--json`` it prints them as one JSON object instead, with the machine (``cnnlab.machine.machine``), for
``benchmarks/results/``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from cnnlab.bench import make_step
from cnnlab.machine import machine
from cnnlab.models import create_model
from cnnlab.runtime import cpu_has_bf16, resolve_device


def _build(
    model_name: str, batch: int, shape: tuple[int, ...], device: torch.device
) -> dict[tuple[str, bool], Callable[[], None]]:
    """A training step per set-up: each precision the device computes, in NCHW and channels-last."""
    dtypes = (
        {"fp32": None, "bf16": torch.bfloat16} if cpu_has_bf16() or device.type == "cuda" else {"fp32": None}
    )
    steps = {}
    for name, dtype in dtypes.items():
        for cl in (False, True):
            torch.manual_seed(0)
            model = create_model(model_name, num_classes=10, in_chans=shape[0]).to(device).train()
            x = torch.randn(batch, *shape, device=device)
            y = torch.randint(10, (batch,), device=device)
            if cl:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            steps[(name, cl)] = make_step(model, "train", x, y, device, dtype)
    return steps


def _round_robin(
    steps: dict[tuple[str, bool], Callable[[], None]], rounds: int, warmup: int, device: torch.device
) -> dict[tuple[str, bool], list[float]]:
    """Seconds per step of each set-up, one step each per round (warm-up rounds too)."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in steps}
    for r in range(rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[key].append(time.perf_counter() - start)
        print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    return times


def summarize(times: dict[tuple[str, bool], list[float]]) -> dict[str, dict[str, Any]]:
    """Per precision: the median ms per step in each layout, their ratio, and each round's own ratio
    (the two steps of a round ran moments apart, under the same load)."""
    out = {}
    for name in dict.fromkeys(key[0] for key in times):
        nchw, nhwc = times[(name, False)], times[(name, True)]
        ratios = [a / b for a, b in zip(nchw, nhwc, strict=True)]
        out[name] = {
            "nchw_ms": 1000 * statistics.median(nchw),
            "channels_last_ms": 1000 * statistics.median(nhwc),
            "speedup": statistics.median(nchw) / statistics.median(nhwc),
            "round_speedup_median": statistics.median(ratios),
            "channels_last_faster_rounds": sum(r > 1 for r in ratios),
            "nchw_ms_per_round": [1000 * t for t in nchw],
            "channels_last_ms_per_round": [1000 * t for t in nhwc],
        }
    return out


def main(
    rounds: int = 10,
    model_name: str = "resnet18",
    batch: int = 16,
    size: str = "3x224x224",
    warmup: int = 2,
    as_json: bool = False,
) -> None:
    shape = tuple(int(n) for n in size.split("x"))
    device = resolve_device("auto")
    result = summarize(_round_robin(_build(model_name, batch, shape, device), rounds, warmup, device))
    if as_json:
        settings = {"model": model_name, "batch": batch, "input": list(shape), "rounds": rounds}
        print(json.dumps({"machine": machine(), **settings, "results": result}, indent=2))
        return
    print(
        f"{model_name} train, batch {batch}, {size}, {device}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {rounds} rounds; median ms per step"
    )
    for name, r in result.items():
        print(
            f"{name}: NCHW {r['nchw_ms']:.0f} ms, channels-last {r['channels_last_ms']:.0f} ms, "
            f"speed-up {r['speedup']:.3f}x; per round: median {r['round_speedup_median']:.3f}x, "
            f"channels-last faster in {r['channels_last_faster_rounds']} of {rounds}"
        )
        for layout in ("nchw", "channels_last"):
            print(f"  {layout}: " + " ".join(f"{t:.0f}" for t in r[f"{layout}_ms_per_round"]))


if __name__ == "__main__":
    as_json = "--json" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--json"]
    main(int(args[0]) if args else 10, *args[1:2], *(int(a) for a in args[2:3]), *args[3:4], as_json=as_json)
