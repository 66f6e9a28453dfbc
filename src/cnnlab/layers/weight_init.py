"""Weight-initialization helpers the model families share."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)
P = ParamSpec("P")


def skip_on_meta(init: Callable[Concatenate[M, P], None]) -> Callable[Concatenate[M, P], None]:
    """Make a model's weight-initialization method do nothing when the model lives on the meta device.

    Models are built there only to be counted or traced: there are no values to set, and the init
    functions would cost time for nothing (see benchmarks/README.md, "Measurement notes").
    """

    @wraps(init)
    def init_unless_meta(module: M, *args: P.args, **kwargs: P.kwargs) -> None:
        first = next(module.parameters(), None)
        if first is None or not first.is_meta:
            init(module, *args, **kwargs)

    return init_unless_meta
