"""VGG: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015 (arXiv:1409.1556).

Plain stacks of 3x3 convolutions (stride 1, padding 1, ReLU) split into five stages by 2x2/2 max
pooling, so the image side shrinks by 32; then three fully connected layers, 4096-4096-classes, with
ReLU and dropout 0.5 after the first two. The configurations A, B, D and E of the paper's Table 1 are
VGG-11/13/16/19; each is written below as the table writes it, channel counts with "M" for a pool.

What differs from the paper: the ``_bn`` variants add BatchNorm after every conv (Ioffe and Szegedy
2015; not in the paper, as torchvision does). An adaptive average pool to 7x7 sits before the
classifier, as in torchvision, so any input of at least 32x32 reaches the 7x7x512 the first FC expects
(at 224x224 it is the identity); the paper instead evaluated larger images by turning the FCs into
convolutions. Configurations A-LRN and C (with 1x1 convs) are not built. Layer names and indices
(``features.N``, ``avgpool``, ``classifier.N``) are torchvision's so its checkpoints map one to one.
Initialization is torchvision's: He normal (fan-out) for convs, N(0, 0.01) for the FCs, zero biases;
the paper pre-trained the deeper nets from configuration A instead.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import skip_on_meta
from .recipe import Recipe
from .registry import register

# Ten epochs keep a run on mnist5k under ten minutes on two cores. Without BatchNorm, SGD leaves the
# loss at ln(classes) for epochs, as AlexNet's; AdamW's per-weight steps get past it. With BatchNorm,
# SGD trains, but at a fifth of the common rate: at 0.1 the 4096-wide classifier stays at chance.
RECIPE = Recipe(epochs=10, min_steps=300, optimizer="adamw", lr=3e-4, weight_decay=0.05)
BN_RECIPE = Recipe(epochs=10, min_steps=300, lr=0.02)

# Table 1 of the paper: output channels of each 3x3 conv, "M" for a 2x2/2 max pool.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


def make_features(config: list[int | str], in_chans: int, batch_norm: bool) -> nn.Sequential:
    """The convolutional part as one flat Sequential (conv, [bn], relu, ..., pool), as torchvision
    numbers it, so ``features.N`` names the same layer in both."""
    layers: list[nn.Module] = []
    in_ch = in_chans
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
            continue
        out_ch = int(item)
        layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        in_ch = out_ch
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network from its Table 1 configuration; ``batch_norm`` adds BN after each conv. ``hidden``
    is the width of the two fully connected layers (4096 in the paper; smaller for quick checks)."""

    def __init__(
        self,
        config: list[int | str],
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.5,
        hidden: int = 4096,
    ) -> None:
        super().__init__()
        self.features = make_features(config, in_chans, batch_norm)
        width = [c for c in config if c != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(int(width) * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        # Each 2x2/2 pool floors the side; below 2**pools the last map would be empty.
        self.min_input_size = 2 ** config.count("M")
        self.default_input_size = (in_chans, 224, 224)
        self._init_weights()

    @skip_on_meta
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register
def vgg11(**kwargs) -> VGG:
    """VGG-11 (configuration A of Simonyan & Zisserman 2014): 8 conv layers of 3x3 in five stages of
    64-512 channels, each closed by a 2x2 max pool, then FC 4096-4096-classes with dropout 0.5."""
    return VGG(CONFIGS["A"], **kwargs)


@register
def vgg13(**kwargs) -> VGG:
    """VGG-13 (configuration B of Simonyan & Zisserman 2014): 10 conv layers of 3x3, two in every
    stage, then FC 4096-4096-classes with dropout 0.5."""
    return VGG(CONFIGS["B"], **kwargs)


@register
def vgg16(**kwargs) -> VGG:
    """VGG-16 (configuration D of Simonyan & Zisserman 2014): 13 conv layers of 3x3 (2-2-3-3-3 per
    stage), then FC 4096-4096-classes with dropout 0.5."""
    return VGG(CONFIGS["D"], **kwargs)


@register
def vgg19(**kwargs) -> VGG:
    """VGG-19 (configuration E of Simonyan & Zisserman 2014): 16 conv layers of 3x3 (2-2-4-4-4 per
    stage), then FC 4096-4096-classes with dropout 0.5."""
    return VGG(CONFIGS["E"], **kwargs)


@register(recipe=BN_RECIPE)
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 (configuration A of Simonyan & Zisserman 2014) with BatchNorm after every 3x3 conv, as
    torchvision builds it; otherwise the same 8 conv layers and FC 4096-4096-classes."""
    return VGG(CONFIGS["A"], batch_norm=True, **kwargs)


@register(recipe=BN_RECIPE)
def vgg13_bn(**kwargs) -> VGG:
    """VGG-13 (configuration B of Simonyan & Zisserman 2014) with BatchNorm after every 3x3 conv, as
    torchvision builds it; otherwise the same 10 conv layers and FC 4096-4096-classes."""
    return VGG(CONFIGS["B"], batch_norm=True, **kwargs)


@register(recipe=BN_RECIPE)
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 (configuration D of Simonyan & Zisserman 2014) with BatchNorm after every 3x3 conv, as
    torchvision builds it; otherwise the same 13 conv layers and FC 4096-4096-classes."""
    return VGG(CONFIGS["D"], batch_norm=True, **kwargs)


@register(recipe=BN_RECIPE)
def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 (configuration E of Simonyan & Zisserman 2014) with BatchNorm after every 3x3 conv, as
    torchvision builds it; otherwise the same 16 conv layers and FC 4096-4096-classes."""
    return VGG(CONFIGS["E"], batch_norm=True, **kwargs)


# The paper's recipe (`cnnlab train --recipe paper`; docs/papers.md renders it). Simonyan and
# Zisserman 2015, Sec. 3.1: mini-batch SGD at a batch of 256, momentum 0.9, weight decay 5e-4, dropout
# 0.5 on the first two FC layers, lr 0.01 divided by 10 when the validation accuracy stopped improving,
# three times in 370k iterations (74 epochs). The _bn variants are no model of the paper.
_SIMONYAN_ZISSERMAN = Recipe(
    epochs=74,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    decay_norm_and_bias=True,
    schedule="step",
    warmup_epochs=0.0,
    label_smoothing=0.0,
    batch_size=256,
    milestones=(0.25, 0.5, 0.75),
    gamma=0.1,
    data="imagenet",
    source="Simonyan and Zisserman 2015, Sec. 3.1",
    notes="The paper divides the rate on plateaus of the validation accuracy; cnnlab at fixed quarters "
    "of the run (epochs 18.5, 37 and 55.5). The paper trains configuration A from random weights and "
    "starts the deeper nets from A's first four convs and last three FC layers; cnnlab initializes "
    "every net as torchvision does. Not reproduced: the scale jittering and colour shift of the "
    "training images, and the dense evaluation; the numbers are for a training scale of 256",
)

PAPER_RECIPE = {
    "vgg11": _SIMONYAN_ZISSERMAN.replace(
        reports="ImageNet val top-1/top-5 error 29.6%/10.4%, configuration A (Table 3)"
    ),
    "vgg13": _SIMONYAN_ZISSERMAN.replace(
        reports="ImageNet val top-1/top-5 error 28.7%/9.9%, configuration B (Table 3)"
    ),
    "vgg16": _SIMONYAN_ZISSERMAN.replace(
        reports="ImageNet val top-1/top-5 error 27.0%/8.8%, configuration D (Table 3)"
    ),
    "vgg19": _SIMONYAN_ZISSERMAN.replace(
        reports="ImageNet val top-1/top-5 error 27.3%/9.0%, configuration E (Table 3)"
    ),
}
