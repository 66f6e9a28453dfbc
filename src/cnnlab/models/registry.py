"""The model registry: one decorated builder per variant, looked up by name.

@register
def resnet18(**kwargs): return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)

model = create_model("resnet18", num_classes=10, in_chans=1)
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError, InputSizeError, UnknownNameError
from .recipe import DEFAULT as DEFAULT_RECIPE
from .recipe import Recipe

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}
# Beyond these a head or a stem would not fit in any memory; refused in one line instead.
MAX_CLASSES = 2**24
MAX_CHANS = 2**16


def register(fn: Builder | None = None, *, recipe: Recipe | None = None, paper: Recipe | None = None) -> Any:
    """Register a builder under its function name; its module's last part names the family. Used bare
    (``@register``) the model trains with its family module's ``RECIPE`` and ``PAPER_RECIPE``;
    ``@register(recipe=..., paper=...)`` gives a variant its own."""

    def add(fn: Builder) -> Builder:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        fn.family = fn.__module__.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
        fn.recipe = recipe  # type: ignore[attr-defined]
        fn.paper = paper  # type: ignore[attr-defined]
        _MODELS[name] = fn
        return fn

    return add(fn) if fn is not None else add


def recipe_of(name: str, paper: bool = False) -> Recipe:
    """The training defaults of a registered model: its own, its family's, or the common ones. With
    ``paper``, its paper's recipe (see ``paper_recipe_of``); a model without one is a CnnlabError."""
    if paper:
        found = paper_recipe_of(name)
        if found is None:
            raise CnnlabError(
                f"{name} has no paper recipe: train it without --recipe paper (its default recipe), or "
                "pick a model docs/papers.md lists"
            )
        return found
    builder = _entrypoint(name)
    own = getattr(builder, "recipe", None)
    return own or getattr(sys.modules[builder.__module__], "RECIPE", DEFAULT_RECIPE)


def paper_recipe_of(name: str) -> Recipe | None:
    """The recipe of the model's paper: its own, else its family module's ``PAPER_RECIPE`` (one
    ``Recipe`` for the family, or a dict by variant name); None where the model has none."""
    builder = _entrypoint(name)
    own = getattr(builder, "paper", None)
    if own is not None:
        return own
    family = getattr(sys.modules[builder.__module__], "PAPER_RECIPE", None)
    return family.get(name) if isinstance(family, dict) else family


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names in natural order, optionally filtered by a shell pattern such as ``"resnet*"``."""
    names = sorted(_MODELS, key=_natural_key)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _natural_key(name: str) -> list[object]:
    """resnet18 before resnet101: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
    if not (1 <= num_classes <= MAX_CLASSES and 1 <= in_chans <= MAX_CHANS):
        raise CnnlabError(
            f"{name}: num_classes must be from 1 to {MAX_CLASSES:,} and in_chans from 1 to {MAX_CHANS:,}, "
            f"got {num_classes} and {in_chans}"
        )
    try:
        model = builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e) or "multiple values for" in str(e):
            raise CnnlabError(f"{name}: {e}") from None
        raise
    model.register_forward_pre_hook(_InputCheck(name, in_chans))
    return model


def min_input_size(model: nn.Module) -> int:
    """The smallest image side ``model`` takes: its ``min_input_size``, 1 where it declares none."""
    return int(getattr(model, "min_input_size", 1))


def check_input_size(
    model: nn.Module, name: str, input_size: Sequence[int], *, got: str = "got", hint: str = ""
) -> None:
    """Raise InputSizeError, in one line, when images of ``input_size`` (``(C, H, W)``, or anything
    ending in ``H, W``) are smaller than ``model`` takes; ``name`` names the model in the message,
    ``got`` introduces the size found and ``hint``, if any, says what to do.

    Without it a small image fails deep inside a pooling layer with a message about kernel sizes.
    """
    h, w = input_size[-2], input_size[-1]
    minimum = min_input_size(model)
    if min(h, w) < minimum:
        advice = f"; {hint}" if hint else ""
        raise InputSizeError(
            f"{name} needs inputs of at least {minimum}x{minimum} pixels, {got} {h}x{w}{advice}"
        )


class _InputCheck:
    """Refuses, with one clear line, an input the model cannot take: wrong channels or too small."""

    def __init__(self, name: str, in_chans: int) -> None:
        self.name, self.in_chans = name, in_chans

    def __call__(self, module: nn.Module, args: tuple[object, ...]) -> None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            return
        c = x.shape[1]
        if c != self.in_chans:
            raise InputSizeError(
                f"{self.name} was built for {self.in_chans}-channel images, got {c} channels"
            )
        check_input_size(module, self.name, x.shape)


def family_description(name: str) -> str:
    """The first paragraph of the model's family module: the paper, for a family that has one."""
    doc = sys.modules[_entrypoint(name).__module__].__doc__ or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def model_description(name: str) -> str:
    """One paragraph: the builder's docstring, else the first paragraph of its family's docstring."""
    builder = _entrypoint(name)
    doc = builder.__doc__ or sys.modules[builder.__module__].__doc__ or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def num_params(name: str, **kwargs: object) -> int:
    """Parameters of a registered model, counted on the meta device: instant, even for the largest."""
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, **kwargs).parameters())


# Two values of each size for the meta-device builds of dependent_tensors; any two distinct ones do.
_SIZES = {"num_classes": (10, 7), "in_chans": (3, 1)}


def dependent_tensors(name: str, which: str, **kwargs: object) -> dict[str, int | None]:
    """The state_dict keys of ``name`` whose shape depends on ``which`` (``num_classes``: the head;
    ``in_chans``: the stem), each with the dimension that is ``which`` itself, or None where no one
    dimension is (a linear classifier's flattened C x H x W pixels).

    Found without a layer name: the model is built twice on the meta device with two values.
    """
    base, other = _SIZES[which]
    shapes = []
    for value in (base, other):
        sizes = {
            "num_classes": base if which != "num_classes" else value,
            "in_chans": 3 if which != "in_chans" else value,
        }
        with torch.device("meta"):
            model = create_model(name, **sizes, **kwargs)
        shapes.append(
            {k: tuple(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
        )
    found: dict[str, int | None] = {}
    for key, shape in shapes[0].items():
        changed = shapes[1].get(key)
        if changed == shape:
            continue
        same_rank = changed is not None and len(changed) == len(shape)
        dims = (
            [d for d, xy in enumerate(zip(shape, changed, strict=True)) if xy == (base, other)]
            if same_rank
            else []
        )
        found[key] = dims[0] if len(dims) == 1 else None
    return found


def size_in(state: dict[str, torch.Tensor], dependent: dict[str, int | None]) -> int | None:
    """The value of the size ``dependent`` (from dependent_tensors) was found for, as ``state`` has it:
    None where its tensors are missing, or disagree."""
    sizes = {
        state[k].shape[d] for k, d in dependent.items() if d is not None and k in state and state[k].dim() > d
    }
    return sizes.pop() if len(sizes) == 1 else None


def describe_models(pattern: str | None = None) -> list[dict[str, object]]:
    """Name, family, parameters (1000 classes, 3 channels) and minimum input of each model.

    Models are built on the meta device: no memory, no initialization time.
    """
    rows = []
    for name in list_models(pattern):
        with torch.device("meta"):
            model = create_model(name)
        rows.append(
            {
                "name": name,
                "family": model_family(name),
                "params": sum(p.numel() for p in model.parameters()),
                "min_input_size": min_input_size(model),
                "default_input_size": list(getattr(model, "default_input_size", (3, 224, 224))),
                "description": model_description(name),
                "recipe": dataclasses.asdict(recipe_of(name)),
                "paper_recipe": _asdict_or_none(paper_recipe_of(name)),
            }
        )
    return rows


def _asdict_or_none(recipe: Recipe | None) -> dict[str, object] | None:
    return None if recipe is None else dataclasses.asdict(recipe)
