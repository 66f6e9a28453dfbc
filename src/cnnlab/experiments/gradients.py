"""How much gradient reaches each layer: the norm of the loss gradient with respect to a layer's
parameters, on a fixed probe batch, as training computes it (train mode, so BatchNorm normalizes with
the batch's own statistics). An experiment passes ``gradient_observer(...)`` to ``train_arm`` to
measure it before training and after every epoch.

The loss may come in named parts (GoogLeNet's main and auxiliary losses): each part's gradient is
taken on the same forward pass, so the parts add up to the total's gradient exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import Normalize
from ..data.base import Dataset
from .arms import Setup

TOTAL = "total"
PROBE_SIZE = 128  # the training batch: the gradient of one step, with its batch statistics
QUICK_PROBE_SIZE = 32  # --quick is a smoke test: a quarter of the work for each measurement

# (outputs of the model in train mode, labels) -> the loss's named parts, each a scalar.
LossParts = Callable[[Any, torch.Tensor], dict[str, torch.Tensor]]


def cross_entropy(outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The plain classification loss, in one part."""
    return {"loss": F.cross_entropy(outputs, labels)}


def conv_layers(model: nn.Module) -> list[str]:
    """The names of every conv layer of ``model``, in the order they were built (first to last)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def layer_gradient_norms(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: LossParts,
    layers: Sequence[str],
) -> dict[str, dict[str, float]]:
    """The L2 norm of the loss gradient with respect to all parameters of each named layer (for a
    conv without bias: its weight's Frobenius norm), for the whole loss (``"total"``) and, when
    ``loss_fn`` returns more than one part, for each part: ``{part: {layer: norm}}``. Runs a copy of
    ``model`` in train mode, so neither its BatchNorm statistics nor its gradients change."""
    probe = copy.deepcopy(model).train()
    params = {name: list(probe.get_submodule(name).parameters()) for name in layers}
    flat = [p for ps in params.values() for p in ps]
    parts = loss_fn(probe(images), labels)
    grads: dict[str, list[torch.Tensor]] = {}
    for i, (part, loss) in enumerate(parts.items()):
        grads[part] = list(torch.autograd.grad(loss, flat, retain_graph=i < len(parts) - 1))
    if len(grads) > 1:
        grads[TOTAL] = [torch.stack(g).sum(0) for g in zip(*grads.values(), strict=True)]
    else:
        grads = {TOTAL: next(iter(grads.values()))}
    out = {}
    for part, g in grads.items():
        norms, start = {}, 0
        for name, ps in params.items():
            norms[name] = torch.nn.utils.get_total_norm(g[start : start + len(ps)]).item()
            start += len(ps)
        out[part] = norms
    return out


def probe_batch(data: Dataset, size: int = PROBE_SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed draw of ``size`` training images, normalized with the dataset's mean and std as the
    trainer does, and their labels: the same batch for every arm, seed and epoch."""
    n = len(data.train_labels)
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(size, n)]
    return Normalize(data.mean, data.std)(data.train_images[keep]), data.train_labels[keep]


def probe_size(setup: Setup) -> int:
    """How many images an experiment's probe batch holds."""
    return QUICK_PROBE_SIZE if setup.quick else PROBE_SIZE


def gradient_observer(
    data: Dataset,
    loss_fn: LossParts = cross_entropy,
    layers: Sequence[str] | None = None,
    size: int = PROBE_SIZE,
) -> Callable[[nn.Module, int], dict[str, Any]]:
    """An ``observe`` for ``fit``: ``layer_gradient_norms`` on one probe batch of ``data``'s training
    images; ``layers`` None: every conv layer. Returns ``{"epoch": E, "layers": [...], part: {...}}``."""
    images, labels = probe_batch(data, size)

    def observe(model: nn.Module, epoch: int) -> dict[str, Any]:
        device = next(model.parameters()).device
        names = list(layers) if layers is not None else conv_layers(model)
        norms = layer_gradient_norms(model, images.to(device), labels.to(device), loss_fn, names)
        return {"epoch": epoch, "layers": names, **norms}

    return observe


def seed_band(per_seed: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """Mean, lowest and highest over the seeds (the first axis) of equally shaped nested lists: a curve
    per seed becomes the curve the figures draw and the band shaded around it."""
    t = torch.tensor(per_seed, dtype=torch.float64)
    return t.mean(0).tolist(), t.amin(0).tolist(), t.amax(0).tolist()
