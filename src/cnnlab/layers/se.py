"""SEBlock: squeeze-and-excitation (Hu, Shen, Sun 2018)."""

from __future__ import annotations

import torch
from torch import nn


class SEBlock(nn.Module):
    """Squeeze-and-Excitation (Hu, Shen, Sun 2018): global average pool (squeeze), then
    FC(C/r)-ReLU-FC(C)-sigmoid (excitation), and a channel-wise rescale of the input.

    The two FC layers act on a 1x1 map and are written as 1x1 convs with bias (the same weights as
    ``nn.Linear``), named ``fc1``/``fc2`` as in timm and torchvision. ``rd_channels`` overrides C/r,
    as EfficientNet needs (a quarter of the block's input, not of its expanded width), and ``act``
    its SiLU.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        rd_channels: int | None = None,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        rd = rd_channels if rd_channels is not None else max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.act = act(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel weights in (0, 1), shape (N, C, 1, 1): what the analyses inspect."""
        return torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)
