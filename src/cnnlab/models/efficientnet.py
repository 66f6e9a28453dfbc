"""EfficientNet: Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019 (arXiv:1905.11946).

EfficientNet-B0 (Table 1) is a stack of mobile inverted bottlenecks (MBConv, from MobileNetV2/MnasNet):
a 1x1 expansion by 1 or 6, a depthwise kxk conv (k = 3 or 5) that carries the stride, squeeze-and-
excitation, and a linear 1x1 projection, with an identity shortcut (and stochastic depth) where the
shape is kept. A 3x3/2 stem conv to 32 channels comes first; a 1x1 conv to 1280 channels, global
average pool, dropout and one FC close it. B1-B7 scale B0's width (channels), depth (layers per stage)
and input resolution together: the compound scaling of Section 3.3 (see ``compound_scaling``).

What differs from the paper, all to match torchvision so that its checkpoints give equal outputs:

* Stochastic depth drops block i of N (counted over every block, residual or not) with probability
  0.2 * i / N, i from 0, so the last block survives with probability 0.8 + 0.2 / N rather than 0.8.
* BatchNorm: B0-B4 use PyTorch's defaults (eps 1e-5, momentum 0.1); B5-B7 use the paper's TensorFlow
  values (eps 1e-3 and decay 0.99, i.e. momentum 0.01), as torchvision does for each variant.
* Convs use symmetric "same" padding (k - 1) // 2, not TensorFlow's asymmetric SAME for stride 2.
* Initialization: He normal (fan-out) convs with zero bias, BN weight 1 / bias 0, and the FC uniform in
  +-1/sqrt(num_classes) with zero bias.
Names follow torchvision's (``features.2.0.block.1.0``, ``classifier.1``). Every conv-BN(-SiLU) is an
indexed ``nn.Sequential`` (0 conv, 1 BN, 2 activation) rather than ``cnnlab.layers.ConvBNAct``, whose
children are named ``conv``/``bn``/``act`` and would give different keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layers import DropPath, SEBlock, make_divisible, skip_on_meta
from .recipe import Recipe
from .registry import register

# A network made for 224 px has 1x1 maps from stage 6 on at 32 px, and trained there from scratch it
# learns slowly; at 56-64 px, with each residual block starting as the identity (Goyal et al. 2017),
# AdamW, and neither stochastic depth nor much dropout in a short run, it learns in minutes
# (benchmarks/README.md, "Measurement notes").
RECIPE = Recipe(
    epochs=20,
    min_steps=600,
    image_size=56,
    optimizer="adamw",
    lr=2e-3,
    weight_decay=0.05,
    decay_norm_and_bias=False,
    model_args={"zero_init_residual": True, "stochastic_depth_prob": 0.0, "dropout": 0.1},
)

# EfficientNet-B0, Table 1: (expand ratio, kernel, stride, input channels, output channels, layers)
# for stages 2-8; stage 1 is the stem conv and stage 9 the 1x1 head conv, pool and FC.
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),  # MBConv1, k3x3
    (6, 3, 2, 16, 24, 2),  # MBConv6, k3x3
    (6, 5, 2, 24, 40, 2),  # MBConv6, k5x5
    (6, 3, 2, 40, 80, 3),  # MBConv6, k3x3
    (6, 5, 1, 80, 112, 3),  # MBConv6, k5x5
    (6, 5, 2, 112, 192, 4),  # MBConv6, k5x5
    (6, 3, 1, 192, 320, 1),  # MBConv6, k3x3
)
B0_HEAD_CHANNELS = 1280


def compound_scaling(
    phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15
) -> tuple[float, float, float]:
    """The (depth, width, resolution) multipliers ``(alpha**phi, beta**phi, gamma**phi)``, Eq. 3.

    The FLOPS of a conv net grow linearly with depth but quadratically with width and with resolution,
    so scaling by these multipliers multiplies the FLOPS by ``(alpha * beta**2 * gamma**2) ** phi``. The
    paper fixes ``alpha * beta**2 * gamma**2 ~ 2`` (a small grid search on B0 gave alpha=1.2, beta=1.1,
    gamma=1.15: 1.92), so each unit of ``phi`` roughly doubles the FLOPS, and ``phi`` says how many
    doublings of compute one can afford.

    The released B1-B7 do not use these exact powers: their (width, depth, resolution) come from a
    rounded table (B1: 1.0, 1.1, 240; ...; B7: 2.0, 3.1, 600), which the ``efficientnet_b*`` builders
    hold. The function is here to compare the two (see the tests).
    """
    return alpha**phi, beta**phi, gamma**phi


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
    bn: dict[str, float] | None = None,
) -> nn.Sequential:
    """Conv (no bias), BN, and SiLU unless ``act`` is False, as an indexed ``nn.Sequential`` so that
    the keys are ``0.weight``/``1.weight`` like torchvision's."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, **(bn or {})),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation.

    ``block``: [1x1 expand-BN-SiLU (only if ``expand_ratio`` > 1)], kxk depthwise-BN-SiLU, SE,
    1x1 project-BN (linear: no activation, so the narrow output keeps its information). The shortcut
    adds the input when the stride is 1 and the channels are kept, after stochastic depth.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        drop_path: float = 0.0,
        bn: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        mid = make_divisible(in_ch * expand_ratio)
        layers: list[nn.Module] = []
        if mid != in_ch:
            layers.append(conv_bn(in_ch, mid, 1, bn=bn))
        layers += [
            conv_bn(mid, mid, kernel_size, stride, groups=mid, bn=bn),
            # The squeeze width is a quarter of the block's input, not of the expanded width.
            SEBlock(mid, rd_channels=max(1, in_ch // 4), act=nn.SiLU),
            conv_bn(mid, out_ch, 1, act=False, bn=bn),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.stochastic_depth = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNet(nn.Module):
    """B0's stages scaled by ``width_mult`` (channels, rounded by ``make_divisible``) and ``depth_mult``
    (layers per stage, rounded up); ``resolution`` is only the default input size.

    ``features`` holds the stem (``features.0``), the seven MBConv stages (``features.1``-``7``) and
    the 1x1 head conv (``features.8``); ``classifier`` is dropout then the FC.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        resolution: int = 224,
        dropout: float = 0.2,
        stochastic_depth_prob: float = 0.2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        zero_init_residual: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.width_mult, self.depth_mult, self.resolution = width_mult, depth_mult, resolution
        bn = {"eps": bn_eps, "momentum": bn_momentum}

        def width(channels: int) -> int:
            return make_divisible(channels * width_mult)

        stages = [
            (e, k, s, width(c_in), width(c_out), math.ceil(n * depth_mult))
            for e, k, s, c_in, c_out, n in B0_STAGES
        ]
        self.stage_depths = [n for *_, n in stages]
        total_blocks = sum(self.stage_depths)

        layers: list[nn.Module] = [conv_bn(in_chans, stages[0][3], 3, stride=2, bn=bn)]
        index = 0
        for expand, kernel, stride, c_in, c_out, n in stages:
            blocks = []
            for i in range(n):
                # Stochastic depth grows linearly with the block's position in the whole network.
                p = stochastic_depth_prob * index / total_blocks
                blocks.append(
                    MBConv(c_in if i == 0 else c_out, c_out, expand, kernel, stride if i == 0 else 1, p, bn)
                )
                index += 1
            layers.append(nn.Sequential(*blocks))
        head = width(B0_HEAD_CHANNELS)
        layers.append(conv_bn(stages[-1][4], head, 1, bn=bn))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout, inplace=True), nn.Linear(head, num_classes))
        self.num_features = head

        # Every conv is padded, so even a 1x1 input gives non-empty maps; the minimum is therefore the
        # total stride, 32, as for ResNet: below it the deepest stages would see padding only.
        self.min_input_size = 32
        self.default_input_size = (in_chans, resolution, resolution)
        self._init_weights(zero_init_residual)

    @skip_on_meta
    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each residual block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, MBConv) and m.use_residual:
                    nn.init.zeros_(m.block[-1][1].weight)  # the BN after the 1x1 projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# B0 and its compound-scaled versions: (width, depth, resolution, dropout) as released.
# torchvision (and the paper's TensorFlow code) use BN eps 1e-3, momentum 0.01 for B5-B7 only.
_TF_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}


def _scaled(scaling: tuple[float, float, int, float], **kwargs) -> EfficientNet:
    """A variant by its (width, depth, resolution, dropout); an option given (say, a recipe's dropout)
    wins over the variant's."""
    names = ("width_mult", "depth_mult", "resolution", "dropout")
    return EfficientNet(**(dict(zip(names, scaling, strict=True)) | kwargs))


@register
def efficientnet_b0(**kwargs) -> EfficientNet:
    """EfficientNet-B0: the baseline found by neural architecture search (Table 1), 16 MBConv blocks
    in 7 stages at 16-320 channels, head 1280, 224x224 input, dropout 0.2; 5.3M parameters."""
    return _scaled((1.0, 1.0, 224, 0.2), **kwargs)


@register
def efficientnet_b1(**kwargs) -> EfficientNet:
    """EfficientNet-B1: B0 with depth x1.1 (23 blocks), width x1.0, 240x240 input, dropout 0.2;
    7.8M parameters."""
    return _scaled((1.0, 1.1, 240, 0.2), **kwargs)


@register
def efficientnet_b2(**kwargs) -> EfficientNet:
    """EfficientNet-B2: B0 with depth x1.2, width x1.1 (head 1408), 260x260 input, dropout 0.3;
    9.1M parameters."""
    return _scaled((1.1, 1.2, 260, 0.3), **kwargs)


@register
def efficientnet_b3(**kwargs) -> EfficientNet:
    """EfficientNet-B3: B0 with depth x1.4, width x1.2 (head 1536), 300x300 input, dropout 0.3;
    12.2M parameters."""
    return _scaled((1.2, 1.4, 300, 0.3), **kwargs)


@register
def efficientnet_b4(**kwargs) -> EfficientNet:
    """EfficientNet-B4: B0 with depth x1.8, width x1.4 (head 1792), 380x380 input, dropout 0.4;
    19.3M parameters."""
    return _scaled((1.4, 1.8, 380, 0.4), **kwargs)


@register
def efficientnet_b5(**kwargs) -> EfficientNet:
    """EfficientNet-B5: B0 with depth x2.2, width x1.6 (head 2048), 456x456 input, dropout 0.4, BN
    eps 1e-3 and momentum 0.01; 30.4M parameters."""
    return _scaled((1.6, 2.2, 456, 0.4), **(_TF_BN | kwargs))


@register
def efficientnet_b6(**kwargs) -> EfficientNet:
    """EfficientNet-B6: B0 with depth x2.6, width x1.8 (head 2304), 528x528 input, dropout 0.5, BN
    eps 1e-3 and momentum 0.01; 43.0M parameters."""
    return _scaled((1.8, 2.6, 528, 0.5), **(_TF_BN | kwargs))


@register
def efficientnet_b7(**kwargs) -> EfficientNet:
    """EfficientNet-B7: B0 with depth x3.1, width x2.0 (head 2560), 600x600 input, dropout 0.5, BN
    eps 1e-3 and momentum 0.01; 66.3M parameters."""
    return _scaled((2.0, 3.1, 600, 0.5), **(_TF_BN | kwargs))


# The paper's recipe (`cnnlab train --recipe paper`; docs/papers.md renders it). Tan and Le 2019,
# Sec. 5.2: RMSProp with decay 0.9 and momentum 0.9, weight decay 1e-5, lr 0.256 decayed by 0.97 every
# 2.4 epochs, as MnasNet (Tan et al. 2019), whose batch is 4096 and whose warm-up is 5 epochs; the
# length, EMA and label smoothing are the reference implementation's (tensorflow/tpu).
_TAN_LE = Recipe(
    epochs=350,
    optimizer="rmsprop",
    lr=0.256,
    momentum=0.9,
    weight_decay=1e-5,
    decay_norm_and_bias=False,
    schedule="exponential",
    warmup_epochs=5.0,
    label_smoothing=0.1,
    ema_decay=0.9999,
    batch_size=4096,
    gamma=0.97,
    decay_every=2.4,
    data="imagenet",
    source="Tan and Le 2019, Sec. 5.2, and MnasNet's setup, Tan et al. 2019",
    notes="Batch 4096 and the 5-epoch linear warm-up from 0 are MnasNet's, whose settings the paper "
    "follows; 350 epochs, label smoothing 0.1 and the 0.9999 moving average of the weights are the "
    "reference implementation's. cnnlab counts the 2.4 epochs from the end of the warm-up, as MnasNet "
    "words it; the reference code counts them from the first step, so its rates are 0.97^2 of "
    "cnnlab's after the warm-up. The reference code's weight decay skips BatchNorm only, cnnlab's "
    "every 1-D parameter. Stochastic depth (0.2) and dropout are the models' own; not reproduced: "
    "AutoAugment, and BatchNorm momentum 0.99 (TensorFlow's sense) in B0-B4",
)

# Table 2: ImageNet top-1 and top-5 accuracy (%) of B0-B7, in the revised paper (arXiv v5, 2020), and in
# the first one (ICML 2019), whose numbers the revision replaced.
_REPORTED = ((77.1, 93.3), (79.1, 94.4), (80.1, 94.9), (81.6, 95.7), (82.9, 96.4), (83.6, 96.7), (84.0, 96.8),
             (84.3, 97.0))  # fmt: skip
_REPORTED_ICML = ((76.3, 93.2), (78.8, 94.4), (79.8, 94.9), (81.1, 95.5), (82.6, 96.3), (83.3, 96.7),
                  (84.0, 96.9), (84.4, 97.1))  # fmt: skip
PAPER_RECIPE = {
    f"efficientnet_b{i}": _TAN_LE.replace(
        reports=f"ImageNet val top-1/top-5 accuracy {top1}%/{top5}% (Table 2 of arXiv v5; the ICML 2019 "
        f"version's: {icml1}%/{icml5}%)"
    )
    for i, ((top1, top5), (icml1, icml5)) in enumerate(zip(_REPORTED, _REPORTED_ICML, strict=True))
}
