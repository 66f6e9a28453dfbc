"""The model registry: one decorated builder per variant, looked up by name.

@register
def resnet18(**kwargs): return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)

model = create_model("resnet18", num_classes=10, in_chans=1)
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from torch import nn

from ..errors import CnnlabError, UnknownNameError

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}


def register(fn: Builder) -> Builder:
    """Register a builder under its function name; its module's last part names the family."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    fn.family = fn.__module__.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
    _MODELS[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell pattern such as ``"resnet*"``."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def closest_models(name: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name.lower(), list(_MODELS), n=n, cutoff=0.5)


def model_family(name: str) -> str:
    return _entrypoint(name).family  # type: ignore[attr-defined]


def _entrypoint(name: str) -> Builder:
    try:
        return _MODELS[name]
    except KeyError:
        close = closest_models(name)
        hint = f" Did you mean {', '.join(close)}?" if close else " See `cnnlab models` for the list."
        raise UnknownNameError(f"unknown model {name!r}.{hint}") from None


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs: object) -> nn.Module:
    """Build a registered model with freshly initialized weights."""
    builder = _entrypoint(name)
    if num_classes < 1 or in_chans < 1:
        raise CnnlabError(
            f"{name}: num_classes and in_chans must be positive, got {num_classes} and {in_chans}"
        )
    try:
        return builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise CnnlabError(f"{name}: {e}") from None
        raise


def describe_models(pattern: str | None = None) -> list[dict[str, object]]:
    """Name, family, parameters (1000 classes, 3 channels) and minimum input of each model.

    Models are built on the meta device: no memory, no initialization time.
    """
    import torch

    rows = []
    for name in list_models(pattern):
        with torch.device("meta"):
            model = create_model(name)
        rows.append(
            {
                "name": name,
                "family": model_family(name),
                "params": sum(p.numel() for p in model.parameters()),
                "min_input_size": getattr(model, "min_input_size", 1),
                "default_input_size": list(getattr(model, "default_input_size", (3, 224, 224))),
            }
        )
    return rows
