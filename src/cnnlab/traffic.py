"""The memory a step moves: what ``cnnlab bench`` sets against the machine's copy bandwidth
(``bench.copy_probe``), the ceiling of layers that do little arithmetic per byte (EfficientNet's
depthwise convolutions, BatchNorm, activations), beside the arithmetic peak of ``bench.peak_probe``.

A step's traffic is counted as its operations are dispatched, below autograd and autocast: each reads
every tensor it is given, except an ``out=`` one, and writes those its schema marks written and the new
tensors it returns, once each; a view moves nothing. A tensor written in place counts as read too
(``add_`` reads it; ``copy_`` does not). Caches are ignored, and so are copies a kernel makes inside
itself (a convolution's reordered weights): the count is a model, as ``analysis.costs``'s count of the
arithmetic is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


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
