"""The memory a step moves, against the machine's copy bandwidth: the ceiling of layers that do little
arithmetic per byte (EfficientNet's depthwise convolutions, BatchNorm, activations), beside the
arithmetic peak of ``bench.peak_probe``.

A step's traffic is counted as its operations are dispatched, below autograd and autocast: each reads
every tensor it is given, except an ``out=`` one, and writes those its schema marks written and the new
tensors it returns, once each; a view moves nothing. A tensor written in place counts as read too
(``add_`` reads it; ``copy_`` does not). Caches are ignored, and so are copies a kernel makes inside
itself (a convolution's reordered weights): the count is a model, as ``analysis.costs``'s count of the
arithmetic is one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .runtime import synchronize

COPY_MB = 64  # the probe's tensor: larger than the caches of the CPUs this runs on
COPY_REPETITIONS = 5
_bandwidth: dict[tuple[str, int], float] = {}  # per device and thread count: one probe per process


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not func.is_view:
            self.bytes += _moved(func._schema, args, kwargs, out)
        return out


def _moved(schema: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    read = written = 0
    written_ids: set[int] = set()
    for i, argument in enumerate(schema.arguments):
        tensors = _tensors(args[i] if i < len(args) else kwargs.get(argument.name))
        size = sum(_nbytes(t) for t in tensors)
        if argument.is_write:
            written += size
            written_ids.update(id(t) for t in tensors)
        if not argument.is_out:
            read += size
    return read + written + sum(_nbytes(t) for t in _tensors(out) if id(t) not in written_ids)


def _tensors(value: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def bytes_moved(step: Callable[[], Any]) -> int:
    """The bytes one call of ``step`` reads and writes, counted as the module's docstring says."""
    with _Counter() as counter:
        step()
    return counter.bytes


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second a large copy reads and writes on ``device``: the best of a few repetitions."""
    key = (str(device), torch.get_num_threads())
    if key not in _bandwidth:
        source = torch.ones(COPY_MB * 2**20 // 4, device=device)
        target = torch.empty_like(source)
        _bandwidth[key] = 2 * source.nbytes / min(_timed(lambda: target.copy_(source), device))
    return _bandwidth[key]


def _timed(work: Callable[[], Any], device: torch.device) -> Iterable[float]:
    for _ in range(COPY_REPETITIONS):
        synchronize(device)
        start = time.perf_counter()
        work()
        synchronize(device)
        yield time.perf_counter() - start


def traffic(step: Callable[[], Any], device: torch.device, batch_size: int, seconds: float) -> dict[str, Any]:
    """``cnnlab bench``'s memory figures for a step timed at ``seconds``: the bytes it moves per image,
    the rate at which it moves them, the copy bandwidth, and the first over the second."""
    moved = bytes_moved(step)
    rate, ceiling = moved / seconds, copy_bandwidth(device)
    return {
        "bytes_per_image": moved // batch_size,
        "gb_per_s": round(rate / 1e9, 3),
        "copy_gb_per_s": round(ceiling / 1e9, 3),
        "bandwidth_utilization": round(rate / ceiling, 6),
    }
