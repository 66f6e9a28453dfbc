"""Does channels-last win for training? The measurement behind ``channels_last_default`` (runtime.py).

ResNet-18, batch 16, 3x224x224 by default (or MODEL BATCH CxHxW), one training step at a time, in
fp32 and bf16, NCHW and channels-last: the four set-ups are built once in one process and timed
round-robin, one step each per round, so a load that comes and goes on a shared machine hits all
four alike. Run it as

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/channels_last.py [ROUNDS [MODEL BATCH CxHxW]]

and it prints the median milliseconds per step of each set-up and the channels-last speed-up.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from cnnlab.bench import make_step
from cnnlab.models import create_model
from cnnlab.runtime import cpu_has_bf16, resolve_device


def main(
    rounds: int = 10, model_name: str = "resnet18", batch: int = 16, size: str = "3x224x224", warmup: int = 2
) -> None:
    shape = tuple(int(n) for n in size.split("x"))
    device = resolve_device("auto")
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
    for _ in range(warmup):  # warm-up, also round-robin
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
    print(
        f"{model_name} train, batch {batch}, {size}, {device}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {rounds} rounds; median ms per step"
    )
    for name in dtypes:
        nchw = statistics.median(times[(name, False)]) * 1000
        nhwc = statistics.median(times[(name, True)]) * 1000
        # Each round's own ratio too: the two steps of a round ran moments apart, under the same load.
        ratios = [a / b for a, b in zip(times[(name, False)], times[(name, True)], strict=True)]
        print(
            f"{name}: NCHW {nchw:.0f} ms, channels-last {nhwc:.0f} ms, speed-up {nchw / nhwc:.3f}x; "
            f"per round: median {statistics.median(ratios):.3f}x, channels-last faster in "
            f"{sum(r > 1 for r in ratios)} of {rounds}"
        )
        for key in ((name, False), (name, True)):
            print(f"  {key}: " + " ".join(f"{1000 * t:.0f}" for t in times[key]))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 10, *args[1:2], *(int(a) for a in args[2:3]), *args[3:4])
