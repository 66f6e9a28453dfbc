"""The classification loss that training and ``cnnlab bench`` share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2014)

# MixUp's and CutMix's targets: each sample's partner's labels and its own label's share.
Mixed = tuple[torch.Tensor, torch.Tensor]


def classification_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...],
    y: torch.Tensor,
    label_smoothing: float,
    aux_weight: float = AUX_WEIGHT,
    mixed: Mixed | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and main logits; auxiliary heads (models that return a tuple in training) add theirs,
    weighted by ``aux_weight`` each. With ``mixed`` = (y2, lam), each sample's target is lam of its
    label and 1 - lam of y2's: cross-entropy is linear in the target, so that is the weighted sum of
    the two hard-label losses, label smoothing included."""
    main, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
    loss = _cross_entropy(main, y, label_smoothing, mixed)
    for logits in aux:
        loss = loss + aux_weight * _cross_entropy(logits, y, label_smoothing, mixed)
    return loss, main


def _cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, label_smoothing: float, mixed: Mixed | None
) -> torch.Tensor:
    if mixed is None:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    y2, lam = mixed
    own = F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction="none")
    other = F.cross_entropy(logits, y2, label_smoothing=label_smoothing, reduction="none")
    return (lam * own + (1 - lam) * other).mean()
