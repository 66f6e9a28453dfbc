"""The classification loss that training and ``cnnlab bench`` share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2014)


def classification_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...],
    y: torch.Tensor,
    label_smoothing: float,
    aux_weight: float = AUX_WEIGHT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and main logits; auxiliary heads (models that return a tuple in training) add theirs,
    weighted by ``aux_weight`` each."""
    main, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
    loss = F.cross_entropy(main, y, label_smoothing=label_smoothing)
    for logits in aux:
        loss = loss + aux_weight * F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    return loss, main
