"""ConvBNAct: the conv-BatchNorm-activation triple most families stack."""

from __future__ import annotations

from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv (no bias, since BN follows), BatchNorm, activation; "same" padding for odd kernels.

    Children are named ``conv``, ``bn``, ``act`` so checkpoints read like the architecture.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        padding: int | None = None,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_ch,
            out_ch,
            kernel_size,
            stride,
            padding=(kernel_size - 1) // 2 if padding is None else padding,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps)
        self.act = (
            act(inplace=True) if act in (nn.ReLU, nn.SiLU, nn.ReLU6) else (act() if act else nn.Identity())
        )
