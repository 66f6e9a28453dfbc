"""LocalResponseNorm: AlexNet's normalization across channels (Krizhevsky et al. 2012)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.Module):
    """Local Response Normalization across channels (Krizhevsky, Sutskever, Hinton 2012, Sec. 3.3):

        b[c] = a[c] / (k + alpha/n * sum over the n channels centred on c of a[j]^2) ** beta

    with AlexNet's k=2, n=5, alpha=1e-4, beta=0.75. The paper writes alpha without the 1/n; we follow
    the convention of Caffe and ``torch.nn.LocalResponseNorm`` (alpha divided by n), which is how
    AlexNet's published hyper-parameters are used in practice.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squared = (x * x).unsqueeze(1)  # (N, 1, C, H, W): pool over channels with a 3D window
        half = self.size // 2
        squared = F.pad(squared, (0, 0, 0, 0, half, (self.size - 1) // 2))
        window_sum = F.avg_pool3d(squared, (self.size, 1, 1), stride=1).squeeze(1) * self.size
        return x / (self.k + self.alpha / self.size * window_sum).pow(self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
