"""Evaluation: loss, top-1 and top-5 accuracy of a model on uint8 images, in batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import Normalize, batches
from .runtime import autocast


@torch.no_grad()
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
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in batches(images, labels, batch_size):
        x = normalize(x.to(device, non_blocking=True)).contiguous(memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = topk == y[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
    model.train(was_training)
    n = max(1, len(labels))
    return {"loss": loss_sum.item() / n, "top1": top1.item() / n, "top5": top5.item() / n}
