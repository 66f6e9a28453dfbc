"""How fast a model trains or infers on this machine, and how close that comes to the hardware's peak.

``bench("resnet18")`` times steps on one synthetic batch that already lives on the device (standard
normal inputs, which is what the trainer's normalization produces, and random labels), so data loading
and augmentation are not part of the figure. A training step is the trainer's: forward under autocast,
``classification_loss`` (GoogLeNet's auxiliary heads included), zero_grad, backward, an SGD step with
momentum 0.9 (fused where the trainer fuses it; torch's default loop over the parameters for
``--naive``). An inference step runs the model in eval mode under ``torch.inference_mode``.

Achieved GFLOP/s count only the conv and linear layers' MACs (as ``cnnlab summary`` does), two FLOPs
each, times three for a training step (the backward pass costs about twice the forward). The peak is
``peak_probe``'s: the best of several large square products in the arithmetic the model's kernels
get, on all of torch's threads, so ``utilization`` says how much of what this machine can do in dense
algebra the model actually gets. Each result says what the probe measured (``probe``) and on what
(``machine``). A step of torch's own operations is also judged by the memory it moves
(``cnnlab.traffic``) against ``copy_probe``'s bandwidth: the ceiling of depthwise and element-wise
layers.

``sweep("resnet18")`` runs the grid that shows where the speed comes from: the naive baseline (eager,
fp32, NCHW, no fusion), then each precision in each memory layout, and compiled rows on request.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import infer
from .analysis.summary import summarize
from .errors import CnnlabError
from .fuse import fuse_for_inference
from .loss import classification_loss
from .machine import machine, peak_rss_mb
from .models import create_model, model_family
from .runtime import (
    autocast,
    channels_last_default,
    cpu_has_bf16,
    freed_memory_kept,
    fused_optimizer,
    precision_name,
    resolve_device,
    resolve_precision,
    synchronize,
)
from .traffic import bytes_moved

MODES = ("train", "infer")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_BATCH_SIZE = 16
DEFAULT_STEPS = 10
DEFAULT_WARMUP = 3
# Timed steps go on until this much time has passed: a tiny model's step takes microseconds, and the
# median of ten of those is mostly timer and scheduler noise.
MIN_SECONDS = 1.0
# The peak probe's square products grow through these sides until one takes PROBE_LONG_ENOUGH seconds: a
# product too small for the machine measures the cost of waking its threads (or, on a GPU, of the
# launch) rather than its arithmetic, and the more cores and the wider their units, the larger it must be.
PROBE_SIZES = {"cpu": (512, 1024, 2048, 4096, 8192), "cuda": (4096, 8192, 16384)}
PROBE_LONG_ENOUGH = 0.05
PROBE_REPETITIONS = 5
PROBE_OPS = ("matmul", "conv3x3")
COPY_MB = 64  # copy_probe's tensor: larger than the caches of the CPUs this runs on
# Random labels never converge; a small rate keeps the weights finite. It does not change the cost.
LR = 0.01
MOMENTUM = 0.9
SEED = 0

Step = Callable[[], None]


def prepare_for_inference(model: nn.Module, naive: bool, channels_last: bool) -> nn.Module:
    """The model as ``cnnlab eval`` and ``predict`` run it: BatchNorm folded into the convs (and the
    chosen layout); the naive baseline runs the model as built."""
    return model if naive else fuse_for_inference(model, channels_last=channels_last)


def time_steps(step: Step, device: torch.device, steps: int, warmup: int, min_seconds: float) -> list[float]:
    """Seconds of each timed call of ``step``, after ``warmup`` untimed ones: at least ``steps`` of
    them, and more until ``min_seconds`` have been timed."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times: list[float] = []
    while len(times) < steps or sum(times) < min_seconds:
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


# The probe depends only on the hardware, the precision and the threads: measured once per process, so
# the rows of a sweep share one denominator and do not pay for it again.
_probes: dict[tuple[str, str, int], dict[str, Any]] = {}
_copies: dict[tuple[str, int], float] = {}  # copy_probe's, per device and thread count


def _probe_math(device: torch.device, dtype: torch.dtype | None) -> str:
    """The arithmetic the model's convolutions get in ``dtype``: on CUDA, fp32 convolutions run in TF32
    when cuDNN allows it (torch's default), and the probe must then measure TF32 too, or a model would
    beat its own ceiling."""
    if dtype is not None:
        return precision_name(dtype)
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "fp32"


def _product(op: str, n: int, device: torch.device, dtype: torch.dtype) -> tuple[Step, list[int], int]:
    """One dense product of about ``2 n^3`` FLOPs, its shape and its exact FLOPs. ``matmul`` is the BLAS
    product of two ``n x n`` matrices; ``conv3x3`` the same work as a convolution (``n/4`` channels in
    and out, channels-last, a square map of about ``16n/9`` pixels), which reaches the convolution
    library's kernels: on some CPUs those beat the BLAS product, and a model made of convolutions
    would otherwise exceed its ceiling."""
    gen = torch.Generator(device=device).manual_seed(SEED)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=dtype, generator=gen)

    if op == "matmul":
        a, b = randn(n, n), randn(n, n)
        out = torch.empty(n, n, device=device, dtype=dtype)

        def matmul() -> None:
            torch.mm(a, b, out=out)

        return matmul, [n, n, n], 2 * n**3
    c, side = max(n // 4, 1), max(round((16 * n / 9) ** 0.5), 1)
    x = randn(1, c, side, side).contiguous(memory_format=torch.channels_last)
    w = randn(c, c, 3, 3).contiguous(memory_format=torch.channels_last)

    def conv() -> None:
        with torch.inference_mode():
            torch.nn.functional.conv2d(x, w, padding=1)

    return conv, [1, c, side, side, 3], 2 * c * c * 9 * side * side


def _best_seconds(step: Step, device: torch.device, repetitions: int) -> float:
    """The fastest of ``repetitions`` timed calls after one untimed one (which pays for the first touch
    of the memory and the library's choice of kernel): a busy machine only ever slows a call down."""
    step()
    synchronize(device)
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        step()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def _probe_op(
    op: str,
    sizes: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    repetitions: int,
    long_enough: float,
) -> list[dict[str, Any]]:
    """One measurement per size of ``op``, growing until a product takes ``long_enough`` seconds."""
    tried = []
    for n in sizes:
        step, shape, flops = _product(op, n, device, dtype)
        seconds = _best_seconds(step, device, repetitions)
        tried.append({"op": op, "shape": shape, "gflops_per_s": round(flops / seconds / 1e9, 3)})
        if seconds >= long_enough:
            break
    return tried


def peak_probe(
    device: torch.device,
    dtype: torch.dtype | None,
    sizes: tuple[int, ...] | None = None,
    repetitions: int = PROBE_REPETITIONS,
    long_enough: float = PROBE_LONG_ENOUGH,
) -> dict[str, Any]:
    """The machine's dense-algebra ceiling in ``dtype`` (None: fp32), and how it was measured.

    Dense products (``_product``: a BLAS matmul and the same work as a convolution) of growing size, on
    all the threads torch uses, each warmed up once and timed ``repetitions`` times; the best
    repetition of the best product is the ceiling. A size whose best product takes ``long_enough``
    seconds ends the growth: larger ones only cost time, while a small product under-measures a
    machine with many cores, where waking the threads dominates. The result says what won (``op``,
    ``shape``, ``gflops_per_s``) and how: ``dtype``, ``repetitions``, ``threads`` and every
    measurement in ``tried``.
    """
    sizes = sizes or PROBE_SIZES.get(device.type, PROBE_SIZES["cpu"])
    math = _probe_math(device, dtype)
    key = (str(device), f"{math}:{sizes}:{repetitions}:{long_enough}", torch.get_num_threads())
    if key in _probes:
        return _probes[key]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = math == "tf32"
    try:
        tried = [
            row
            for op in PROBE_OPS
            for row in _probe_op(op, sizes, device, dtype or torch.float32, repetitions, long_enough)
        ]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    best = max(tried, key=lambda row: row["gflops_per_s"])
    _probes[key] = {
        **best,
        "dtype": math,
        "repetitions": repetitions,
        "threads": torch.get_num_threads(),
        "tried": tried,
    }
    return _probes[key]


def copy_probe(device: torch.device, repetitions: int = PROBE_REPETITIONS) -> float:
    """The machine's memory ceiling: bytes per second a copy of ``COPY_MB`` reads and writes, the best
    of ``repetitions`` after a warm-up, once per process, device and thread count."""
    key = (str(device), torch.get_num_threads())
    if key not in _copies:
        source = torch.ones(COPY_MB * 2**20 // 4, device=device)
        target = torch.empty_like(source)
        _copies[key] = 2 * source.nbytes / _best_seconds(lambda: target.copy_(source), device, repetitions)
    return _copies[key]


def _traffic(step: Step, device: torch.device, batch_size: int, seconds: float) -> dict[str, Any]:
    """The bytes a step timed at ``seconds`` moves per image, its rate, the copy probe's, and the first
    rate over the second."""
    moved = bytes_moved(step)
    rate, ceiling = moved / seconds, copy_probe(device)
    return {
        "bytes_per_image": moved // batch_size,
        "gb_per_s": round(rate / 1e9, 3),
        "copy_gb_per_s": round(ceiling / 1e9, 3),
        "bandwidth_utilization": round(rate / ceiling, 6),
    }


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
    naive: bool = False,
) -> Step:
    """One training or inference step of ``model`` on the batch ``(x, y)``. ``forward`` runs the model
    instead of ``model`` itself (the compiled module); the optimizer always takes ``model``'s
    parameters, and steps as the trainer's does unless ``naive`` (torch's default)."""
    forward = model if forward is None else forward
    if mode == "infer":

        def infer() -> None:
            with torch.inference_mode(), autocast(device, dtype):
                forward(x)

        return infer

    params = [p for p in model.parameters() if p.requires_grad]
    fused = None if naive else fused_optimizer(device)
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, fused=fused)
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
    backend: str = "auto",
    num_classes: int = 1000,
    steps: int = DEFAULT_STEPS,
    warmup: int = DEFAULT_WARMUP,
    min_seconds: float = MIN_SECONDS,
    device: str = "auto",
) -> dict[str, Any]:
    """Time ``model_name`` and return the settings used and the speed (the keys of ``cnnlab bench
    --json``). ``channels_last`` None takes this machine's default; ``naive`` overrides precision,
    layout and compilation (eager, fp32, NCHW, no fusion). An inference step runs on the engine and in
    the precision that `cnnlab eval` would choose for ``backend`` and ``precision`` (`cnnlab.infer`);
    training runs on torch. ``steps`` in the result is the number of timed steps, at least the
    ``steps`` asked for."""
    _check_settings(mode, precision, batch_size, steps, warmup, min_seconds)
    dev = resolve_device(device)
    summary = check_models([model_name], input_size, num_classes)[model_name]
    size: tuple[int, int, int] = tuple(summary["input"])  # type: ignore[assignment]
    if naive:
        precision, channels_last, compile = "fp32", False, False
    elif channels_last is None:
        channels_last = channels_last_default(dev)
    dtype = resolve_precision(precision, dev, model_family(model_name))

    torch.manual_seed(SEED)
    model = create_model(model_name, num_classes=num_classes, in_chans=size[0]).to(dev)
    x = torch.randn(batch_size, *size, device=dev)
    y = torch.randint(num_classes, (batch_size,), device=dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode == "infer":
        model = prepare_for_inference(model.eval(), naive, bool(channels_last))
        if not naive:  # as `cnnlab eval` runs it
            precision = infer.DEFAULT_PRECISION if precision == "auto" else precision
            backend = infer.resolve(backend, precision, dev, model)
            dtype = resolve_precision(precision, dev)
    elif backend not in ("auto", "torch"):
        raise CnnlabError(f"--backend {backend} runs inference only: use it with --mode infer")
    else:
        model.train()
    backend = "torch" if mode == "train" or naive else backend
    if backend == "torch":
        step, compile_error = _step(model_name, model, mode, x, y, dev, dtype, compile, naive)
    else:
        step, compile_error = _engine_step(model, model_name, backend, precision, x), None
    times = time_steps(step, dev, steps, warmup, min_seconds)
    seconds = statistics.median(times)
    images_per_s = batch_size / seconds
    # Forward only for inference; a training step adds a backward pass of about twice the forward.
    gflops = summary["macs"] * 2 * (3 if mode == "train" else 1) * images_per_s / 1e9
    probe = peak_probe(dev, dtype)
    peak = probe["gflops_per_s"]
    result: dict[str, Any] = {
        "model": model_name,
        "mode": mode,
        "batch_size": batch_size,
        "input": list(size),
        "precision": precision_name(dtype),
        "channels_last": bool(channels_last),
        "compile": compile and compile_error is None and backend == "torch",
        "naive": naive,
        "backend": backend,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "torch": torch.__version__,
        "steps": len(times),
        "warmup": warmup,
        "images_per_s": round(images_per_s, 2),
        "ms_per_batch": round(1000 * seconds, 3),
        "gflops_per_s": round(gflops, 3),
        "peak_gflops_per_s": round(peak, 3),
        "utilization": round(gflops / peak, 6),  # small figures too keep three significant digits
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "malloc_kept": freed_memory_kept(),  # freed memory reused (the cnnlab command) or glibc's default
        "macs": summary["macs"],
        "probe": dict(probe),
        "machine": machine(),
    }
    if compile_error is not None:
        result["compile_error"] = compile_error
    if backend == "torch" and not result["compile"]:  # a compiled step's kernels are not torch's operations
        result |= _traffic(step, dev, batch_size, seconds)
    return result


def _check_settings(
    mode: str, precision: str, batch_size: int, steps: int, warmup: int, min_seconds: float
) -> None:
    if mode not in MODES:
        raise CnnlabError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise CnnlabError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if batch_size < 1 or steps < 1 or warmup < 0 or min_seconds < 0:
        raise CnnlabError(
            "--batch-size and --steps must be at least 1, --warmup and --min-seconds at least 0; "
            f"got {batch_size}, {steps}, {warmup}, {min_seconds}"
        )


def _engine_step(model: nn.Module, name: str, backend: str, precision: str, x: torch.Tensor) -> Step:
    """An inference step on an ONNX engine, of the model's ONNX file exported and checked; the engines
    read the file when they are built, so it lives only that long."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"

        def onnx() -> Path:
            infer.build_onnx(model, path, {"model": name, "input_size": list(x.shape[1:])})
            return path

        forward = infer.make_engine(model, backend, precision, x.device, onnx)
    x = x.contiguous()

    def step() -> None:
        forward(x)

    return step


def _step(
    name: str,
    model: nn.Module,
    mode: str,
    x: torch.Tensor,
    y: torch.Tensor,
    dev: torch.device,
    dtype: torch.dtype | None,
    compile: bool,
    naive: bool = False,
) -> tuple[Callable[[], None], str | None]:
    """The step to time, compiled if asked and if torch.compile manages; else eager, and why."""
    step = make_step(model, mode, x, y, dev, dtype, naive=naive)
    if not compile:
        return step, None
    try:
        compiled = make_step(model, mode, x, y, dev, dtype, forward=torch.compile(model))
        compiled()  # compilation happens on the first call: that is where it fails
        return compiled, None
    except Exception as e:  # any failure of the compiler stack: the eager numbers still mean something
        error = _one_line(e)
        print(
            f"cnnlab bench: warning: torch.compile failed for {name} ({error}); timing eager instead",
            file=sys.stderr,
        )
        return step, error


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
    options.setdefault("backend", "torch")  # the grid is of torch's own settings
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
