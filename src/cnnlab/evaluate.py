"""Evaluation: loss, top-1 and top-5 accuracy of a model on uint8 images, in batches."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import Normalize
from .data.split import Rows
from .runtime import autocast


@torch.no_grad()
def logits_of(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor | Rows,
    normalize: Normalize,
    device: torch.device,
    batch_size: int = 500,
) -> torch.Tensor:
    """The float logits of every image, (N, K) on ``device``: ``forward`` maps a normalized float batch
    on ``device`` to its logits. ``images`` are read a batch at a time."""
    out = [
        forward(normalize(images[i : i + batch_size].to(device, non_blocking=True))).float().to(device)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, 0, device=device)


def metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy of ``logits`` (N, K) for ``labels`` (N,)."""
    if len(labels) == 0:
        return {"loss": 0.0, "top1": 0.0, "top5": 0.0}
    n = len(labels)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.double(), labels, reduction="sum")
    hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
    top1, top5 = hits[:, 0].sum().item(), hits.any(1).sum().item()
    return {"loss": loss.item() / n, "top1": top1 / n, "top5": top5 / n}


def evaluate_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor | Rows,
    labels: torch.Tensor,
    normalize: Normalize,
    device: torch.device,
    batch_size: int = 500,
) -> dict[str, float]:
    """The metrics of ``forward``, which maps a normalized float batch on ``device`` to its logits."""
    return metrics(logits_of(forward, images, normalize, device, batch_size), labels)


def evaluate(
    model: nn.Module,
    images: torch.Tensor | Rows,
    labels: torch.Tensor,
    normalize: Normalize,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 500,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, float]:
    """``evaluate_logits`` of ``model`` in eval mode (its mode is restored), under autocast to ``dtype``."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            return model(x.contiguous(memory_format=memory_format))

    was_training = model.training
    model.eval()
    try:
        return evaluate_logits(forward, images, labels, normalize, device, batch_size)
    finally:
        model.train(was_training)
