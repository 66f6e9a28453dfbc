"""GoogLeNet (Inception v1): Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke and
Rabinovich, "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842).

A stem (7x7/2 conv, 3x3/2 max pool, 1x1 conv, 3x3 conv, 3x3/2 max pool), nine Inception modules
3a-5b with max pools after 3b and 4e, global average pool, dropout and one FC. Each Inception module
runs four branches side by side and concatenates them: a 1x1 conv; a 1x1 reduction then a 3x3 conv;
a 1x1 reduction then a "5x5" conv; a 3x3/1 max pool then a 1x1 projection. Their widths are the
paper's Table 1, written below as that table. Two auxiliary classifiers, after 4a and 4d, add
gradient to the middle of the network while training: the model then returns the tuple
``(main, aux1, aux2)`` and the trainer adds 0.3 times each auxiliary loss; in eval mode (or with
``aux_logits=False``) it returns the main logits alone.

We build torchvision's version, so its parameter counts (13,004,888 with the auxiliary heads,
6,624,904 without) and state_dict keys hold and its checkpoints map one to one. Where it differs from
the paper:

* BatchNorm (eps 0.001) after every conv, which has no bias (Ioffe and Szegedy 2015 added it to this
  network), and no Local Response Normalization after the first pool and after conv3.
* The "5x5" branch uses a 3x3 conv (a long-standing torchvision quirk kept for its weights); the
  channel counts are the paper's.
* The pool before 5a is 2x2/2 instead of 3x3/2; every stem/stage pool rounds up (``ceil_mode``) as
  Caffe did. At 224x224 the map sizes equal the paper's.
* The auxiliary heads pool adaptively to 4x4 instead of 5x5/3 (the same 4x4 at 224x224, and small
  inputs still work); their 1x1 conv has BN. Then FC 1024, ReLU, dropout 0.7, FC classes, as in the
  paper.
* The final average pool is adaptive (7x7 at 224x224) and the dropout before the FC is 0.2, as in
  torchvision, not the paper's 0.4 (``dropout=0.4`` restores it).
* Initialization is torchvision's: truncated normal with std 0.01 for conv and FC weights (bounds at
  +-2, i.e. effectively untruncated), BN weight 1 and bias 0, FC biases at PyTorch's default; the
  paper trained with asynchronous SGD from a different init. torchvision's ``transform_input``
  (re-normalizing ImageNet inputs for its ported weights) is not built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBNAct, skip_on_meta
from .recipe import Recipe
from .registry import register

BN_EPS = 0.001  # torchvision's BasicConv2d
# Digits of 28 pixels leave Inception 5 a 1x1 map, and the net at 97%; at 64 each stage keeps a few
# pixels to mix. The auxiliary classifiers weigh 0.3 each, as in the paper.
RECIPE = Recipe(image_size=64, aux_weight=0.3)

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> ConvBNAct:
    """torchvision's BasicConv2d: conv without bias, BN (eps 0.001), ReLU; "same" padding."""
    return ConvBNAct(in_ch, out_ch, kernel_size, stride, bn_eps=BN_EPS)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1 | 1x1-3x3 | 1x1-"5x5" | pool-1x1.

    The 1x1 reductions keep the expensive 3x3 and 5x5 convs narrow (Section 4 of the paper); the
    "5x5" branch is a 3x3 conv, as torchvision builds it.
    """

    def __init__(
        self,
        in_ch: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(conv_bn(in_ch, ch3x3red, 1), conv_bn(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv_bn(in_ch, ch5x5red, 1), conv_bn(ch5x5red, ch5x5, 3))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv_bn(in_ch, pool_proj, 1)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: average pool to 4x4, 1x1 conv to 128, FC 1024, ReLU, dropout, FC."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = conv_bn(in_ch, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Adaptive, not the paper's 5x5/3: equal at 224x224 (14x14 -> 4x4), and defined for small maps.
        x = self.conv(F.adaptive_avg_pool2d(x, 4))
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    """Inception v1 from a table of module widths; ``aux_logits`` builds the two auxiliary heads."""

    def __init__(
        self,
        table: dict[str, tuple[int, int, int, int, int, int]] = INCEPTION_TABLE,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = conv_bn(in_chans, 64, 7, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_bn(64, 64, 1)
        self.conv3 = conv_bn(64, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_ch = 192
        for name, widths in table.items():
            module = Inception(in_ch, *widths)
            setattr(self, f"inception{name}", module)
            in_ch = module.out_channels
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        if aux_logits:
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, dropout_aux)
            self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes, dropout_aux)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)
        # Found by experiment, the same in train and eval mode (tests/test_googlenet.py checks it):
        # 15x15 gives a 2x2 stem output and 1x1 maps from 4a on; at 14x14 the stem output is 1x1 and
        # the 3x3/2 pool before 4a has nothing to pool. (Training with a batch of one image also
        # needs maps larger than 1x1 for BN, i.e. inputs of 47x47: a property of BN, not refused here.)
        self.min_input_size = 15
        self.default_input_size = (in_chans, 224, 224)
        self._init_weights()

    @skip_on_meta
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # torchvision's bounds are absolute (+-2 for std 0.01): in effect a plain normal.
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def inceptions(self) -> dict[str, Inception]:
        return {name[len("inception") :]: m for name, m in self.named_children() if isinstance(m, Inception)}

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        return self.maxpool2(self.conv3(self.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.forward_stem(x)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        heads = self.aux_logits and self.training
        aux1 = self.aux1(x) if heads else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if heads else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None and aux2 is not None:
            return logits, aux1, aux2
        return logits


@register
def googlenet(**kwargs) -> GoogLeNet:
    """GoogLeNet / Inception v1 (Szegedy et al. 2014) as torchvision builds it: a conv stem, nine
    Inception modules (parallel 1x1, 1x1-3x3, 1x1-"5x5" (a 3x3 here) and pool-1x1 branches) with the
    paper's Table 1 widths, BatchNorm after every conv, global average pool, dropout 0.2, FC; two
    auxiliary classifiers after 4a and 4d (``aux_logits=True``) return ``(main, aux1, aux2)`` in
    training only."""
    return GoogLeNet(**kwargs)


# The paper's recipe (`cnnlab train --recipe paper`; docs/papers.md renders it). Szegedy et al. 2015,
# Sec. 6: asynchronous SGD with momentum 0.9, the rate decreased by 4% every 8 epochs; the auxiliary
# losses weighted 0.3 (loss.py). The paper gives no rate, batch, weight decay or length.
PAPER_RECIPE = {
    "googlenet": Recipe(
        epochs=250,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=2e-4,
        decay_norm_and_bias=True,
        schedule="exponential",
        warmup_epochs=0.0,
        label_smoothing=0.0,
        batch_size=32,
        gamma=0.96,
        decay_every=8.0,
        data="imagenet",
        reports="ImageNet val top-5 error 10.07%, one model (of their seven, the one with the lowest val "
        "top-1 error) on one crop (Table 3; the 6.67% of the challenge is 7 models x 144 crops)",
        source="Szegedy et al. 2015, Sec. 6",
        notes="The rate 0.01 at a batch of 32, weight decay 2e-4 and 250 epochs are not the paper's but "
        "those of Caffe's BVLC GoogLeNet solver, which writes the paper's schedule as a step of 320k "
        "iterations of 32 (8 epochs) with gamma 0.96 and stops at 10M iterations. Not reproduced: the "
        "asynchronous training, Polyak averaging, the photometric distortions and the crops of 8-100% "
        "of the image; the model is torchvision's, with BatchNorm and dropout 0.2 before the FC (the "
        "paper's 0.4: --model-arg dropout=0.4)",
    )
}
