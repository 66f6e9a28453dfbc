"""Fine-tuning: a training that starts from the weights of another run (``cnnlab train --init RUN``).

The init run may come from ``cnnlab train`` on other data or from ``cnnlab convert`` (an ImageNet
checkpoint). Its model and builder options are the new run's; its weights are copied into the model
created for the new data tensor by tensor, with two exceptions found without any layer name, by
``models.dependent_tensors`` (two meta-device builds with two values of ``num_classes`` or
``in_chans``), as ``convert`` reads a checkpoint's number of classes:

* the head, every tensor whose shape depends on the number of classes (``fc``, ``classifier``,
  GoogLeNet's auxiliary classifiers, ...), keeps its fresh initialisation when the class counts
  differ, and is copied like the rest when they are the same;
* the stem, the tensor whose shape depends on the input channels, is summed over its input channels
  when the run saw C-channel images and the new data is gray: the stem is linear in its input, so
  the gray model on x computes exactly what the C-channel model computes on x replicated C times.

Anything else that does not fit (a missing or surplus tensor, another shape, another change of
channels) is a one-line CnnlabError: a partial load would train a half-random model silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import rundir
from ..errors import CnnlabError
from ..models import dependent_tensors, size_in
from ..text import name_some


def init_architecture(
    run_dir: str | os.PathLike[str], model: str | None, model_kwargs: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The model name and builder options of a fine-tuning from ``run_dir``: the run's own.

    ``model`` None means "not chosen"; another name than the run's is a CnnlabError naming both.
    ``model_kwargs`` are added over the run's: options that change no shape (say, dropout) may differ,
    and those that do fail in ``init_from_run``'s check.
    """
    config = rundir.read_config(run_dir)
    name, kwargs = config.model, config.model_kwargs
    if model is not None and model != name:
        raise CnnlabError(
            f"--init {run_dir} holds a {name} and cannot start a {model}; "
            f"leave out --model or pass --model {name}"
        )
    return name, {**kwargs, **model_kwargs}


def init_from_run(
    model: nn.Module, run_dir: str | os.PathLike[str], model_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Copy the weights of the run ``run_dir`` into ``model``, a freshly created model of the same
    architecture (built with ``model_kwargs``, by default the run's) for the new data.

    Returns ``{"run", "model", "from_run": tensors taken from the run, "summed": stem tensors summed
    over the input channels, "new": head tensors left as initialised}``. Nothing is loaded unless
    every tensor fits.
    """
    run = Path(run_dir)
    config = rundir.read_config(run)
    if getattr(model, "is_nonparametric", False):  # its "weights" are the init run's training set
        raise CnnlabError(f"--init: {config.model} stores its training set; it has no weights to start from")
    source = rundir.load_run(run)  # every check of a run directory: config, weights and their fit
    name = config.model
    kwargs = dict(config.model_kwargs if model_kwargs is None else model_kwargs)
    ours, theirs = model.state_dict(), source.state_dict()
    head = dependent_tensors(name, "num_classes", **kwargs)
    stem = dependent_tensors(name, "in_chans", **kwargs)
    state, new, summed, missing, shapes = _match(run, ours, theirs, head, stem)
    surplus = [k for k in theirs if k not in ours and not _is_extra(k)]
    problems = [
        f"{len(keys)} {what}: {name_some(keys)}"
        for what, keys in (("missing", missing), ("surplus", surplus), ("of another shape", shapes))
        if keys
    ]
    if problems:
        raise CnnlabError(
            f"--init {run} does not fit the {name} built for this data: {'; '.join(problems)}; "
            "nothing was loaded"
        )
    model.load_state_dict(state)
    return {
        "run": str(run),
        "model": name,
        "from_run": sum(1 for k in state if not _is_extra(k)) - len(new),
        "summed": summed,
        "new": new,
    }


def _classes_differ(ours: dict[str, Any], theirs: dict[str, Any], head: dict[str, int | None]) -> bool:
    new_classes, run_classes = size_in(ours, head), size_in(theirs, head)
    if new_classes is None or run_classes is None:  # no dimension is the class count itself
        return any(k in theirs and theirs[k].shape != ours[k].shape for k in head if k in ours)
    return new_classes != run_classes


def _match(
    run: Path,
    ours: dict[str, Any],
    theirs: dict[str, Any],
    head: dict[str, int | None],
    stem: dict[str, int | None],
) -> tuple[dict[str, Any], list[str], list[str], list[str], list[str]]:
    """The state to load, and the keys that are new, summed over the channels, missing or of another
    shape."""
    classes_differ = _classes_differ(ours, theirs, head)
    state: dict[str, Any] = {}
    new: list[str] = []
    summed: list[str] = []
    missing: list[str] = []
    shapes: list[str] = []
    for key, mine in ours.items():
        # Extra state describes the new model's own set-up (the linear classifier's input shape, fixed
        # by the trainer's dry run on the new data), not something learnt: it stays.
        if _is_extra(key) or (key in head and classes_differ):
            state[key] = mine
            if not _is_extra(key):
                new.append(key)
            continue
        if key not in theirs:
            missing.append(key)
            continue
        value = theirs[key]
        dim = stem.get(key)
        # Where the channels are no single dimension (the linear classifier's C x H x W weight), a
        # change is reported below as a shape like any other.
        if dim is not None and value.dim() == mine.dim() and value.shape[dim] != mine.shape[dim]:
            value = _gray_stem(run, key, value, mine.shape[dim], dim)
            summed.append(key)
        if value.shape != mine.shape:
            shapes.append(f"{key} {list(value.shape)} (new model: {list(mine.shape)})")
            continue
        state[key] = value
    return state, new, summed, missing, shapes


def describe(info: Mapping[str, Any]) -> str:
    """One line for the training log: what came from the init run and what did not."""
    line = f"init: {info['from_run']} tensors from {info['run']}"
    if info["summed"]:
        line += f" ({len(info['summed'])} summed over the input channels: {name_some(info['summed'])})"
    return line + f", {len(info['new'])} new" + (f" ({name_some(info['new'])})" if info["new"] else "")


def _is_extra(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "_extra_state"


def _gray_stem(run: Path, key: str, value: torch.Tensor, want: int, dim: int) -> torch.Tensor:
    """The run's stem tensor for one-channel data, or a CnnlabError for any other change of channels."""
    have = value.shape[dim]
    if want != 1:
        raise CnnlabError(
            f"--init {run} was trained on {have}-channel images and the data has {want}; only gray data "
            f"can start from a run of more channels (its stem {key} is summed over them)"
        )
    # A gray image replicated to `have` channels meets each input channel's weights with the same
    # value: summing them over the channels gives the very same outputs on the single channel.
    return value.sum(dim=dim, keepdim=True)
