"""How fast a model trains or infers on this machine, and how close that comes to the hardware's peak.

``bench("resnet18")`` times steps on one synthetic batch that already lives on the device (standard
normal inputs, which is what the trainer's normalization produces, and random labels), so data loading
and augmentation are not part of the figure. A training step is the trainer's: forward under autocast,
``classification_loss`` (GoogLeNet's auxiliary heads included), zero_grad, backward, an SGD step with
momentum 0.9. An inference step runs the model in eval mode under ``torch.inference_mode``.

Achieved GFLOP/s count only the conv and linear layers' MACs (as ``cnnlab summary`` does), two FLOPs
each, times three for a training step (the backward pass costs about twice the forward). The peak is a
square matrix product timed the same way in the same precision, so ``utilization`` says how much of
what this machine can do in dense algebra the model actually gets.

``sweep("resnet18")`` runs the grid that shows where the speed comes from: the naive baseline (eager,
fp32, NCHW, no fusion), then each precision in each memory layout, and compiled rows on request.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .analysis.summary import summarize
from .errors import CnnlabError
from .fuse import fuse_for_inference
from .loss import classification_loss
from .models import create_model
from .runtime import (
    autocast,
    channels_last_default,
    cpu_has_bf16,
    precision_name,
    resolve_device,
    resolve_precision,
)

MODES = ("train", "infer")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_BATCH_SIZE = 16
DEFAULT_STEPS = 10
DEFAULT_WARMUP = 3
# Timed steps go on until this much time has passed: a tiny model's step takes microseconds, and the
# median of ten of those is mostly timer and scheduler noise.
MIN_SECONDS = 1.0
# Side of the probe's square matrices: 1024 keeps a few dozen CPU cores busy (2 GFLOP per product); a
# GPU needs far more work per launch before the launch overhead stops mattering.
PROBE_SIZE = {"cpu": 1024, "cuda": 8192}
# Random labels never converge; a small rate keeps the weights finite. It does not change the cost.
LR = 0.01
MOMENTUM = 0.9
SEED = 0

Step = Callable[[], None]


def prepare_for_inference(model: nn.Module, naive: bool, channels_last: bool) -> nn.Module:
    """The model as ``cnnlab eval`` and ``predict`` run it: BatchNorm folded into the convs (and the
    chosen layout); the naive baseline runs the model as built."""
    return model if naive else fuse_for_inference(model, channels_last=channels_last)


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: without this the clock would stop when the launches are queued.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Step, device: torch.device, steps: int, warmup: int, min_seconds: float) -> list[float]:
    """Seconds of each timed call of ``step``, after ``warmup`` untimed ones: at least ``steps`` of
    them, and more until ``min_seconds`` have been timed."""
    for _ in range(warmup):
        step()
    _sync(device)
    times: list[float] = []
    while len(times) < steps or sum(times) < min_seconds:
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


# The probe depends only on the hardware, the precision and the threads: measured once per process, so
# the rows of a sweep share one denominator and do not pay for it again.
_peaks: dict[tuple[str, torch.dtype | None, int], float] = {}


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype | None,
    steps: int = DEFAULT_STEPS,
    warmup: int = DEFAULT_WARMUP,
    min_seconds: float = MIN_SECONDS,
) -> float:
    """GFLOP/s of square matrix products in ``dtype`` (None: fp32), timed like the model steps.

    The operands are made in the dtype itself, which is what autocast hands the kernels. On CUDA an
    fp32 product follows torch's matmul precision setting (full fp32 by default) while convolutions
    may use TF32, so fp32 utilization can exceed 1 there.
    """
    key = (str(device), dtype, torch.get_num_threads())
    if key not in _peaks:
        n = PROBE_SIZE.get(device.type, PROBE_SIZE["cpu"])
        gen = torch.Generator(device=device).manual_seed(SEED)
        a, b = (torch.randn(n, n, device=device, dtype=dtype or torch.float32, generator=gen) for _ in "ab")
        times = time_steps(lambda: torch.mm(a, b), device, steps, warmup, min_seconds)
        _peaks[key] = 2 * n**3 / statistics.median(times) / 1e9
    return _peaks[key]


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports kilobytes, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _one_line(e: BaseException) -> str:
    """The exception's type and first line, capped: compiler errors run to pages. A first line that
    only announces the cause (torch's "backend='inductor' raised:") gets the next one too."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else "".join(lines[:1])
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:300]


def make_step(
    model: nn.Module,
    mode: str,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    forward: Callable[[torch.Tensor], Any] | None = None,
) -> Step:
    """One training or inference step of ``model`` on the batch ``(x, y)``. ``forward`` runs the model
    instead of ``model`` itself (the compiled module); the optimizer always takes ``model``'s
    parameters."""
    forward = model if forward is None else forward
    if mode == "infer":

        def infer() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                forward(x)

        return infer

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    # As in the trainer: a scaler only for fp16, which underflows without one.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def train() -> None:
        with autocast(device, dtype):
            loss, _ = classification_loss(forward(x), y, 0.0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return train


def check_models(
    names: list[str], input_size: tuple[int, int, int] | None = None, num_classes: int = 1000
) -> dict[str, dict[str, Any]]:
    """``summarize`` every model before any is timed, so a mistyped name or an input that is too small
    fails at once (naming the closest models) rather than after minutes of timing the others."""
    summaries = {name: summarize(name, input_size, num_classes=num_classes) for name in names}
    for name in names:
        with torch.device("meta"):
            if getattr(create_model(name), "is_nonparametric", False):
                raise CnnlabError(
                    f"{name} stores its training set instead of learning: it has no step to time"
                )
    return summaries


def bench(
    model_name: str,
    mode: str = "train",
    batch_size: int = DEFAULT_BATCH_SIZE,
    input_size: tuple[int, int, int] | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
    naive: bool = False,
    num_classes: int = 1000,
    steps: int = DEFAULT_STEPS,
    warmup: int = DEFAULT_WARMUP,
    min_seconds: float = MIN_SECONDS,
    device: str = "auto",
) -> dict[str, Any]:
    """Time ``model_name`` and return the settings used and the speed (the keys of ``cnnlab bench
    --json``). ``channels_last`` None takes this machine's default; ``naive`` overrides precision,
    layout and compilation (eager, fp32, NCHW, no fusion). ``steps`` in the result is the number of
    timed steps, at least the ``steps`` asked for."""
    if mode not in MODES:
        raise CnnlabError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise CnnlabError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if batch_size < 1 or steps < 1 or warmup < 0 or min_seconds < 0:
        raise CnnlabError(
            "--batch-size and --steps must be at least 1, --warmup and --min-seconds at least 0; "
            f"got {batch_size}, {steps}, {warmup}, {min_seconds}"
        )
    dev = resolve_device(device)
    summary = check_models([model_name], input_size, num_classes)[model_name]
    size: tuple[int, int, int] = tuple(summary["input"])  # type: ignore[assignment]
    if naive:
        precision, channels_last, compile = "fp32", False, False
    elif channels_last is None:
        channels_last = channels_last_default(dev)
    dtype = resolve_precision(precision, dev)

    torch.manual_seed(SEED)
    model = create_model(model_name, num_classes=num_classes, in_chans=size[0]).to(dev)
    x = torch.randn(batch_size, *size, device=dev)
    y = torch.randint(num_classes, (batch_size,), device=dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode == "infer":
        model = prepare_for_inference(model.eval(), naive, bool(channels_last))
    else:
        model.train()

    compile_error = None
    step = make_step(model, mode, x, y, dev, dtype)
    if compile:
        try:
            compiled = make_step(model, mode, x, y, dev, dtype, forward=torch.compile(model))
            compiled()  # compilation happens on the first call: that is where it fails
            step = compiled
        except Exception as e:  # any failure of the compiler stack: the eager numbers still mean something
            compile_error = _one_line(e)
            print(
                f"cnnlab bench: warning: torch.compile failed for {model_name} ({compile_error}); "
                "timing eager instead",
                file=sys.stderr,
            )
    times = time_steps(step, dev, steps, warmup, min_seconds)
    seconds = statistics.median(times)
    images_per_s = batch_size / seconds
    # Forward only for inference; a training step adds a backward pass of about twice the forward.
    gflops = summary["macs"] * 2 * (3 if mode == "train" else 1) * images_per_s / 1e9
    peak = matmul_peak(dev, dtype, steps, warmup, min_seconds)
    result: dict[str, Any] = {
        "model": model_name,
        "mode": mode,
        "batch_size": batch_size,
        "input": list(size),
        "precision": precision_name(dtype),
        "channels_last": bool(channels_last),
        "compile": compile and compile_error is None,
        "naive": naive,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "torch": torch.__version__,
        "steps": len(times),
        "warmup": warmup,
        "images_per_s": round(images_per_s, 2),
        "ms_per_batch": round(1000 * seconds, 3),
        "gflops_per_s": round(gflops, 3),
        "peak_gflops_per_s": round(peak, 3),
        "utilization": round(gflops / peak, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "macs": summary["macs"],
    }
    if compile_error is not None:
        result["compile_error"] = compile_error
    return result


def sweep_configs(device: torch.device, compile: bool = False) -> list[dict[str, Any]]:
    """The grid of one sweep: naive, then fp32 and bf16 (where the hardware has it) in NCHW and
    channels-last; with ``compile``, each precision again compiled, in this machine's default layout."""
    has_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    precisions = ["fp32", "bf16"] if has_bf16 else ["fp32"]
    configs: list[dict[str, Any]] = [{"naive": True}]
    configs += [{"precision": p, "channels_last": cl} for p in precisions for cl in (False, True)]
    if compile:
        configs += [
            {"precision": p, "channels_last": channels_last_default(device), "compile": True}
            for p in precisions
        ]
    return configs


def sweep(
    models: str | list[str], compile: bool = False, device: str = "auto", **options: Any
) -> list[dict[str, Any]]:
    """``bench`` each model in each configuration of ``sweep_configs``; every row also gets ``speedup``,
    its images/s over the naive row's. ``options`` are ``bench``'s other arguments (mode, batch size,
    input, steps...)."""
    names = [models] if isinstance(models, str) else list(models)
    check_models(names, options.get("input_size"), options.get("num_classes", 1000))
    rows = []
    for name in names:
        naive_speed = None
        for config in sweep_configs(resolve_device(device), compile):
            row = bench(name, device=device, **options, **config)
            naive_speed = naive_speed or row["images_per_s"]
            row["speedup"] = round(row["images_per_s"] / naive_speed, 3)
            rows.append(row)
    return rows
