"""AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012.

Five convolutional layers (the first 11x11 with stride 4), overlapping 3x3/2 max pooling after the
first, second and fifth, ReLU everywhere, then three fully connected layers (4096, 4096, classes)
with dropout 0.5 on the two hidden ones. One class builds two variants:

* ``alexnet``: the single-tower network torchvision ships (Krizhevsky's later "one weird trick"
  widths 64-192-384-256-256, padding 2 in conv1, no LRN, no groups, dropout placed *before* fc6
  and fc7, PyTorch's default initialization). Its state_dict (``features.N``, ``avgpool``,
  ``classifier.N``) equals torchvision's, 61,100,840 parameters.
* ``alexnet_paper``: the 2012 network as Section 3 and Figure 2 describe it: 96-256-384-384-256
  filters, Local Response Normalization (k=2, n=5, alpha=1e-4, beta=0.75) after the ReLU of conv1
  and conv2 and before their pooling, the two-GPU split written as grouped convolutions (groups=2 in
  conv2, conv4 and conv5, where a GPU only sees its own half of the previous layer; conv3 and the
  FC layers connect across both), dropout on the outputs of fc6 and fc7, and the paper's
  initialization (weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere).
  60,965,224 parameters.

What differs from the paper: (1) the input is 227x227, not the 224x224 the text states: with an
11x11/4 conv and no padding only 227 gives the 55x55 maps of Figure 2 (the known off-by-three of the
paper, and the size Caffe's reference model uses); (2) an adaptive average pool to 6x6 sits before
the classifier, as in torchvision, so smaller images (e.g. digits resized to 64x64) still reach the
9216-input fc6; at 227x227 the map is already 6x6 and the pool is the identity; (3) LRN runs over
all 96 (256) maps, while each GPU of the paper normalized only its own half: they differ only at the
two maps each side of the tower boundary; (4) no PCA colour augmentation or test-time 10-crop
averaging, which belong to the data pipeline, not the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import CnnlabError
from ..layers import LocalResponseNorm, skip_on_meta
from .recipe import Recipe
from .registry import register

# (kernel, stride, padding) of conv2..conv5; conv1's is a variant's number.
LATER_CONVS = ((5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1))
POOL_AFTER = (0, 1, 4)  # conv1, conv2 and conv5 are followed by 3x3/2 max pooling
POOL = (3, 2)
INITS = ("torch", "paper", "kaiming")

# Without BatchNorm, neither the paper's N(0, 0.01) nor PyTorch's default initialization gets past a
# loss of ln(classes) in a short run; He et al.'s keeps each layer's variance, and AdamW's per-weight
# steps suit the 9216-input fc6. Twelve epochs left both variants at 98.1% on mnist5k, still learning
# (benchmarks/README.md, "Measurement notes").
RECIPE = Recipe(
    epochs=20, min_steps=600, optimizer="adamw", lr=3e-4, weight_decay=0.05, model_args={"init": "kaiming"}
)


def smallest_input(convs: Sequence[tuple[int, int, int]]) -> int:
    """The smallest side for which every conv and pooling output is at least 1x1."""
    for size in range(1, 4096):
        s = size
        for i, (k, stride, pad) in enumerate(convs):
            s = (s + 2 * pad - k) // stride + 1
            if s < 1:
                break
            if i in POOL_AFTER:
                s = (s - POOL[0]) // POOL[1] + 1
                if s < 1:
                    break
        else:
            return size
    raise ValueError("no input size up to 4096 fits these convolutions")


class AlexNet(nn.Module):
    """AlexNet from its widths, conv1 geometry, groups per conv and the paper's options.

    ``lrn`` inserts LocalResponseNorm after the ReLU of conv1 and conv2; ``bn`` inserts BatchNorm2d in
    the same two places instead (what later networks normalize with; one or the other, not both).
    ``groups[i]`` splits conv i+1 into towers; ``dropout_after_fc`` puts dropout on the outputs of fc6
    and fc7 (the paper) rather than on their inputs (torchvision). ``init`` is ``"torch"`` (PyTorch's
    layer defaults, as torchvision), ``"paper"`` (N(0, 0.01) weights, unit biases in conv2, conv4,
    conv5, fc6 and fc7) or ``"kaiming"`` (He et al. 2015's N(0, 2/fan_in), zero biases).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 192, 384, 256, 256),
        conv1: tuple[int, int, int] = (11, 4, 2),
        groups: Sequence[int] = (1, 1, 1, 1, 1),
        lrn: bool = False,
        bn: bool = False,
        dropout_after_fc: bool = False,
        init: str = "torch",
        hidden: int = 4096,
        dropout: float = 0.5,
        num_classes: int = 1000,
        in_chans: int = 3,
        default_size: int = 224,
    ) -> None:
        super().__init__()
        if lrn and bn:
            raise CnnlabError("alexnet: lrn and bn are two normalizations for the same place; choose one")
        convs = (conv1, *LATER_CONVS)
        layers: list[nn.Module] = []
        in_ch = in_chans
        for i, ((k, stride, pad), width, g) in enumerate(zip(convs, widths, groups, strict=True)):
            conv = nn.Conv2d(in_ch, width, k, stride=stride, padding=pad, groups=g)
            layers += [conv, nn.ReLU(inplace=True)]
            if lrn and i < 2:
                layers.append(LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
            if bn and i < 2:
                layers.append(nn.BatchNorm2d(width))
            if i in POOL_AFTER:
                layers.append(nn.MaxPool2d(*POOL))
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        fc6, fc7, fc8 = (
            nn.Linear(in_ch * 36, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, num_classes),
        )
        if dropout_after_fc:
            head = [fc6, nn.ReLU(inplace=True), nn.Dropout(dropout), fc7, nn.ReLU(inplace=True)]
            head += [nn.Dropout(dropout), fc8]
        else:
            head = [nn.Dropout(dropout), fc6, nn.ReLU(inplace=True), nn.Dropout(dropout), fc7]
            head += [nn.ReLU(inplace=True), fc8]
        self.classifier = nn.Sequential(*head)
        self.min_input_size = smallest_input(convs)
        self.default_input_size = (in_chans, default_size, default_size)
        if init not in INITS:
            raise CnnlabError(f"alexnet: init must be one of {', '.join(INITS)}, got {init!r}")
        if init != "torch":
            self._init_weights(init)

    @skip_on_meta
    def _init_weights(self, init: str) -> None:
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        # Section 5: unit biases feed the ReLUs positive inputs early on, which the authors found
        # speeds up the start of learning; they are in conv2, conv4, conv5 and the hidden FC layers.
        unit_bias = {convs[1], convs[3], convs[4], fcs[0], fcs[1]} if init == "paper" else set()
        for layer in convs + fcs:
            if init == "paper":
                nn.init.normal_(layer.weight, 0.0, 0.01)
            else:  # a variance that each ReLU layer keeps, where N(0, 0.01) shrinks it layer by layer
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.constant_(layer.bias, 1.0 if layer in unit_bias else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register
def alexnet(**kwargs) -> AlexNet:
    """AlexNet as torchvision ships it (Krizhevsky 2014 widths 64-192-384-256-256, one tower, no LRN),
    5 convs and 3 FC layers, adaptive 6x6 average pool, dropout 0.5; torchvision's names and weights
    layout (61.1M parameters), 224x224 input."""
    return AlexNet(**kwargs)


@register
def alexnet_paper(init: str = "paper", **kwargs) -> AlexNet:
    """AlexNet as in the 2012 paper: 96 11x11/4 filters, LRN after conv1 and conv2, overlapping 3x3/2
    max pooling, the two-GPU split as groups=2 in conv2, conv4 and conv5, FC 4096-4096 with dropout
    0.5, N(0, 0.01) weights and unit biases in conv2/4/5 and fc6/7; 227x227 input (61.0M parameters)."""
    return AlexNet(
        widths=(96, 256, 384, 384, 256),
        conv1=(11, 4, 0),
        groups=(1, 2, 1, 2, 2),
        lrn=True,
        dropout_after_fc=True,
        init=init,
        default_size=227,
        **kwargs,
    )


# The paper's recipe (`cnnlab train --recipe paper`; docs/papers.md renders it), for alexnet_paper:
# torchvision's single tower is a later network. Krizhevsky et al. 2012, Sec. 5: SGD at a batch of 128,
# momentum 0.9, weight decay 5e-4, lr 0.01 for every layer, divided by 10 when the validation error
# stopped improving, three times before the end; about 90 epochs.
PAPER_RECIPE = {
    "alexnet_paper": Recipe(
        epochs=90,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        decay_norm_and_bias=True,
        schedule="step",
        warmup_epochs=0.0,
        label_smoothing=0.0,
        batch_size=128,
        milestones=(0.25, 0.5, 0.75),
        gamma=0.1,
        data="imagenet",
        reports="ILSVRC-2012 val top-1/top-5 error 40.7%/18.2%, one CNN (Table 2)",
        source="Krizhevsky et al. 2012, Sec. 5",
        notes="The paper divides the rate on plateaus of the validation error; cnnlab at fixed quarters "
        "of the run (epochs 22.5, 45 and 67.5). Not reproduced: the PCA colour augmentation, the "
        "random 224 crops of 256x256 images (cnnlab pads and crops) and the averaging over ten patches "
        "at test time that the number includes",
    )
}
