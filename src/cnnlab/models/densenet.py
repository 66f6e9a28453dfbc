"""DenseNet: Huang, Liu, van der Maaten and Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017 (arXiv:1608.06993).

Each layer of a dense block receives the channel concatenation of the block input and every earlier
layer's output, and adds ``k`` (the growth rate) new channels of its own. All variants here are
DenseNet-BC: each layer is a bottleneck, BN-ReLU-1x1 conv to ``4k`` channels then BN-ReLU-3x3 conv to
``k`` (pre-activation order, Section 3); between blocks a transition BN-ReLU-1x1 conv halves the
channels (compression 0.5) and a 2x2 average pool halves the resolution.

* ImageNet DenseNet-121/169/201/161 (Table 1): a 7x7/2 conv and 3x3/2 max pool stem, four dense blocks,
  a final BN, ReLU, global average pool and one FC. k=32 with a 64-channel stem, except DenseNet-161
  (k=48, 96-channel stem).
* CIFAR DenseNet-BC (L=100, k=12), Section 4.2: one 3x3 conv to 2k channels, three dense blocks of
  (L-4)/6 bottleneck layers, BN-ReLU-global average pool-FC.

What differs from the paper: nothing in the computation. Parameter names follow torchvision's
(``features.denseblock1.denselayer1.conv1``, ``features.transition1.norm``, ``classifier``) so its
checkpoints map one to one; initialization is torchvision's (He normal, fan-in, for convs; BN weight 1,
bias 0; FC bias 0). ``memory_efficient=True`` recomputes each layer's concatenation and 1x1 bottleneck
in the backward pass instead of storing it (Pleiss et al. 2017, "Memory-Efficient Implementation of
DenseNets"), which turns the quadratic memory of the concatenations into linear memory at the cost of
one extra forward of those layers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import skip_on_meta
from .recipe import Recipe
from .registry import register

# An epoch of mnist5k takes DenseNet-BC-100 about 70 s on two cores: eight keep a run under ten
# minutes (six reached 98.3%).
RECIPE = Recipe(epochs=8, min_steps=240)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (``bn_size * k`` channels), BN-ReLU-3x3 conv (``k`` channels).

    Takes the list of all earlier feature maps of its block and returns only its ``k`` new channels;
    the block keeps the list, so each concatenation is made once, by the layer that needs it.
    """

    def __init__(
        self,
        in_ch: int,
        growth_rate: int,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def bottleneck(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Concatenate every earlier map, then BN-ReLU-1x1 conv: the part whose memory grows with depth."""
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def _checkpointed_bottleneck(self, features: list[torch.Tensor]) -> torch.Tensor:
        calls = 0

        def run(*maps: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1 or not self.norm1.training:
                return self.bottleneck(list(maps))
            # The recomputation in the backward pass: normalize with the batch statistics as the
            # forward did, but with momentum 0 so that the running statistics are updated once per
            # step, exactly as on the plain path (norm1 itself would update them a second time).
            norm = self.norm1
            x = F.batch_norm(
                torch.cat(maps, 1),
                norm.running_mean,
                norm.running_var,
                norm.weight,
                norm.bias,
                training=True,
                momentum=0.0,
                eps=norm.eps,
            )
            return self.conv1(self.relu1(x))

        return checkpoint(run, *features, use_reentrant=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            out = self._checkpointed_bottleneck(features)
        else:
            out = self.bottleneck(features)
        out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``denselayer1..n``; layer i sees ``in_ch + (i - 1) * k`` channels. Outputs ``in_ch + n * k``."""

    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, **layer_kwargs: object) -> None:
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_ch + i * growth_rate, growth_rate, **layer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compression) and 2x2 average pool between two dense blocks."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    """A DenseNet-BC from its growth rate, layers per block and stem width.

    ``stem="imagenet"``: 7x7/2 conv, BN, ReLU, 3x3/2 max pool. ``stem="cifar"``: one 3x3 conv, whose
    output goes straight into the first block (each dense layer starts with its own BN-ReLU).
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.growth_rate, self.block_config = growth_rate, tuple(block_config)
        if stem == "imagenet":
            layers: list[tuple[str, nn.Module]] = [
                ("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
            ]
        else:
            layers = [("conv0", nn.Conv2d(in_chans, num_init_features, 3, padding=1, bias=False))]
        self.features = nn.Sequential(OrderedDict(layers))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(
                num_layers,
                channels,
                growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.features.add_module(f"denseblock{i + 1}", block)
            channels += num_layers * growth_rate
            if i < len(block_config) - 1:
                out_ch = int(channels * compression)
                self.features.add_module(f"transition{i + 1}", Transition(channels, out_ch))
                channels = out_ch
        # torchvision's name for the final BN after four blocks is norm5; the CIFAR net's is norm4.
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels

        # Each transition's 2x2 average pool (no padding) needs a map of at least 2x2, so the first block
        # needs 2**transitions; the padded stem maps s to ceil(s / 4) (ImageNet) or s (CIFAR).
        # Confirmed by forward passes at the minimum and one below it (see the tests).
        first_block = 2 ** (len(block_config) - 1)
        self.min_input_size = first_block if stem == "cifar" else 4 * (first_block - 1) + 1
        self.default_input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32)
        self._init_weights()

    @skip_on_meta
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # fan-in, as torchvision
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))  # the final BN's ReLU: norm5 is the last module of ``features``
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ImageNet DenseNet-BC (Table 1 of the paper).
@register
def densenet121(**kwargs) -> DenseNet:
    """DenseNet-121 (ImageNet): k=32, blocks of 6/12/24/16 bottleneck layers, 64-channel 7x7 stem;
    8.0M parameters."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


@register
def densenet169(**kwargs) -> DenseNet:
    """DenseNet-169 (ImageNet): k=32, blocks of 6/12/32/32 bottleneck layers, 64-channel 7x7 stem;
    14.1M parameters."""
    return DenseNet(32, (6, 12, 32, 32), 64, **kwargs)


@register
def densenet201(**kwargs) -> DenseNet:
    """DenseNet-201 (ImageNet): k=32, blocks of 6/12/48/32 bottleneck layers, 64-channel 7x7 stem;
    20.0M parameters."""
    return DenseNet(32, (6, 12, 48, 32), 64, **kwargs)


@register
def densenet161(**kwargs) -> DenseNet:
    """DenseNet-161 (ImageNet): the wide one, k=48, blocks of 6/12/36/24 bottleneck layers, 96-channel
    7x7 stem; 28.7M parameters."""
    return DenseNet(48, (6, 12, 36, 24), 96, **kwargs)


# CIFAR DenseNet-BC (Section 4.2, Table 2).
@register
def densenet_bc_100(**kwargs) -> DenseNet:
    """DenseNet-BC (L=100, k=12) for 32x32 images: a 3x3 stem conv to 24 channels, three dense blocks
    of 16 bottleneck layers with compression 0.5 between them; 0.77M parameters with 10 classes."""
    depth, k = 100, 12
    n = (depth - 4) // 6  # 3 blocks x n layers x 2 convs + stem conv + 2 transition convs + FC
    return DenseNet(k, (n, n, n), 2 * k, stem="cifar", **kwargs)


# The paper's recipes (`cnnlab train --recipe paper`; docs/papers.md renders them). Huang et al. 2017,
# Sec. 4.2: SGD with Nesterov momentum 0.9 (no dampening) and weight decay 1e-4; CIFAR at a batch of 64
# for 300 epochs, lr 0.1 divided by 10 at 50% and 75% of the epochs; ImageNet at 256 for 90 epochs,
# divided by 10 at epochs 30 and 60.
_CIFAR = Recipe(
    epochs=300,
    optimizer="nesterov",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    decay_norm_and_bias=True,
    schedule="step",
    warmup_epochs=0.0,
    label_smoothing=0.0,
    batch_size=64,
    milestones=(0.5, 0.75),
    gamma=0.1,
    data="cifar10",
    source="Huang et al. 2017, Sec. 4.2",
    notes="The paper's dropout of 0.2 is for the runs without augmentation; with it (C10+), as here, "
    "there is none, as the model builds by default. Augmentation as cnnlab's default at 32 px: "
    "4-pixel padding, crops and flips",
)
_IMAGENET = _CIFAR.replace(
    epochs=90,
    batch_size=256,
    milestones=(1 / 3, 2 / 3),
    data="imagenet",
    notes="Not reproduced: the paper's ImageNet augmentation (that of the ResNet reimplementation it "
    "follows) and the 10-crop column of its table; the reported number is single-crop",
)

PAPER_RECIPE = {
    "densenet121": _IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 25.02%/7.71%, single crop (Table 3)"
    ),
    "densenet169": _IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 23.80%/6.85%, single crop (Table 3)"
    ),
    "densenet201": _IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 22.58%/6.34%, single crop (Table 3)"
    ),
    "densenet161": _IMAGENET.replace(
        notes="DenseNet-161 (k=48) is among the authors' released models, not in the paper's tables. "
        + _IMAGENET.notes
    ),
    "densenet_bc_100": _CIFAR.replace(reports="CIFAR-10 (augmented) test error 4.51% (Table 2)"),
}
