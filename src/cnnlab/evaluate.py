"""Evaluation: loss, top-1 and top-5 accuracy of a model on uint8 images, in batches."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import Normalize, batches
from .runtime import autocast


@torch.no_grad()
def evaluate_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    normalize: Normalize,
    device: torch.device,
    batch_size: int = 500,
) -> dict[str, float]:
    """The metrics of ``forward``, which maps a normalized float batch on ``device`` to its logits."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in batches(images, labels, batch_size):
        y = y.to(device, non_blocking=True)
        logits = forward(normalize(x.to(device, non_blocking=True))).float().to(device)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = topk == y[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
    n = max(1, len(labels))
    return {"loss": loss_sum.item() / n, "top1": top1.item() / n, "top5": top5.item() / n}


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
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
