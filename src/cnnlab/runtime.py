"""Device and precision, decided once and in one place from the flags and the hardware; and the CPU's
optimizer step and allocator set up for training.

Models know nothing about either: the trainer moves them and wraps their forward in autocast.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

import torch

from .errors import CnnlabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# Model families that train faster in fp32 than in bf16 even on a CPU that computes bf16 natively, so
# that `auto` keeps them in fp32 there: EfficientNet, whose depthwise convolutions oneDNN runs slowly
# in bf16 (benchmarks/README.md, "auto precision on the CPU").
CPU_FP32_FAMILIES = frozenset({"efficientnet"})
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
# What keep_freed_memory overrides (MMAP_THRESHOLD is moot with no mapping, TOP_PAD with no trimming):
# a user who set one of them as glibc's MALLOC_<NAME>_ or glibc.malloc.<name> tunable chose otherwise.
MALLOC_ENV = ("MMAP_MAX", "TRIM_THRESHOLD", "MMAP_THRESHOLD", "TOP_PAD")
_freed_memory_kept = False


def cpu_has_bf16() -> bool:
    """True when the CPU computes in bf16 natively (AVX-512 BF16 or AMX), where autocast pays off."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch without the probes: be conservative
        return False


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory of freed tensors for the next ones instead of handing it back
    to the system. By default it maps every block over 32 MB afresh (AlexNet's and VGG's weights, their
    gradients and their bf16 copies) and returns freed memory at the heap's top, so each training step
    faults those pages in again: benchmarks/README.md, "The allocator". In exchange the process keeps
    what it freed, holes below live blocks included, for its later tensors. Called once by the
    ``cnnlab`` command before it runs a verb; a user's own setting of any of ``MALLOC_ENV`` wins.
    Returns whether the setting was made (``freed_memory_kept`` says so later; bench rows record it)."""
    global _freed_memory_kept
    if not sys.platform.startswith("linux") or _malloc_set_by_user():
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # None: a C library without it (not glibc)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    made = [mallopt(M_TRIM_THRESHOLD, 2**31 - 1), mallopt(M_MMAP_MAX, 0)]  # each 1 when taken
    _freed_memory_kept = made == [1, 1]
    return _freed_memory_kept


def freed_memory_kept() -> bool:
    """Whether ``keep_freed_memory`` made its setting in this process."""
    return _freed_memory_kept


def _malloc_set_by_user() -> bool:
    """Whether the environment sets one of ``MALLOC_ENV``, which keep_freed_memory would override."""
    tunables = {item.split("=")[0] for item in os.environ.get("GLIBC_TUNABLES", "").split(":")}
    return any(
        f"MALLOC_{name}_" in os.environ or f"glibc.malloc.{name.lower()}" in tunables for name in MALLOC_ENV
    )


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES and not name.startswith("cuda:"):
        raise CnnlabError(f"unknown device {name!r}: use one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device, family: str | None = None) -> torch.dtype | None:
    """The autocast dtype for ``name`` on ``device``; None means plain fp32.

    ``auto`` takes bf16 where the hardware has it (CUDA with bf16, or a CPU with native bf16 for a model
    ``family`` not in CPU_FP32_FAMILIES), else fp32. fp16 is offered on CUDA only, where a gradient
    scaler guards against underflow.
    """
    if name not in PRECISIONS:
        raise CnnlabError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    if name == "auto":
        if cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16() and family not in CPU_FP32_FAMILIES else None
    if name == "fp32":
        return None
    if name == "fp16" and not cuda:
        raise CnnlabError("--precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    return torch.bfloat16 if name == "bf16" else torch.float16


def fused_optimizer(device: torch.device) -> bool | None:
    """torch.optim's ``fused`` for SGD and AdamW on ``device``: True on the CPU, where torch's default
    is a loop over the parameters and the fused step, one pass over each, was faster where measured
    (benchmarks/README.md, "The optimizer's step"); None, torch's own choice, elsewhere."""
    return True if device.type == "cpu" else None


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA kernels run asynchronously, and a clock stopped without
    this would time their launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield


def channels_last_default(device: torch.device) -> bool:
    """Whether training, ``cnnlab eval`` and ``cnnlab bench`` lay activations and weights out
    channels-last (NHWC) by default.

    On CPU, oneDNN computes convolutions in channels-last (or blocked) layouts, so NCHW tensors are
    reordered around each one; on CUDA, cuDNN's tensor-core convolutions read channels-last natively.
    Both were faster channels-last where measured: benchmarks/README.md, "Measurement notes".
    """
    return device.type in ("cpu", "cuda")
