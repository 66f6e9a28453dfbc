"""ResNet: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385).

Two families from the paper, built by one class:

* ImageNet ResNet-18/34/50/101/152 (Table 1): a 7x7/2 stem conv and 3x3/2 max pool, four stages of
  basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) blocks at 64-512 channels, BN after
  every conv, projection shortcuts (option B) where the shape changes, global average pool, one FC.
* CIFAR ResNet-20/32/44/56/110 (Section 4.2): depth 6n+2, a 3x3 stem, three stages of n basic blocks
  at 16/32/64 channels, parameter-free identity shortcuts that subsample and zero-pad the new
  channels (option A). The ``plain`` twins are the same networks with the shortcuts removed, as in
  the paper's degradation experiment (Figure 6).

The class also builds the SE-ResNets (senet.py) and the deformable ResNets (dcn_resnet.py): an SE block
on every residual branch (``se_reduction``), deformable 3x3 convs in chosen stages (``deform_stages``).

What differs from the paper: in the bottleneck the stride sits on the 3x3 conv rather than the first
1x1 ("ResNet v1.5", as torchvision does; same parameters, better accuracy), and parameter names follow
torchvision's (``conv1``, ``bn1``, ``layer1.0.downsample``) so its checkpoints map one to one. Weights
use He (Kaiming) normal initialization in fan-out mode; BN starts at weight 1, bias 0.

Two options exist for the initialization experiment, where the initialization alone must set the
signal's scale: ``norm="none"`` replaces every BatchNorm by the identity, and ``weight_init`` is
``"he"`` (the default above), ``"torch"`` (PyTorch's own layer defaults) or ``"normal"`` (N(0, 0.01)
for every conv and FC weight, zero biases).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DeformConv2d, SEBlock, make_divisible, skip_on_meta
from .recipe import Recipe
from .registry import register

WEIGHT_INITS = ("he", "torch", "normal")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, deformable: bool = False) -> nn.Module:
    if deformable:
        return DeformConv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity that subsamples by ``stride`` and zero-pads the extra channels. No weights."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride, self.extra_channels = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class ResidualBlock(nn.Module):
    """out = relu(F(x) + shortcut(x)); the subclasses define the residual branch F.

    ``shortcut=False`` makes the plain twin (no identity path at all). ``se_reduction`` adds
    squeeze-and-excitation at the end of F, before the addition (Hu et al. 2018, Fig. 3).
    ``deformable`` makes the block's 3x3 convs deformable (Dai et al. 2017).
    """

    expansion = 1

    def __init__(
        self,
        out_ch: int,
        stride: int,
        downsample: nn.Module | None,
        shortcut: bool,
        se_reduction: int | None,
    ) -> None:
        super().__init__()
        self.out_ch, self.stride = out_ch, stride
        self.se = (
            SEBlock(out_ch, rd_channels=make_divisible(out_ch / se_reduction, round_limit=0.0))
            if se_reduction
            else None
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shortcut = shortcut

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return out if self.se is None else self.se(out)

    def identity(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut path: ``x``, or its projection or zero-padded subsample where the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut:
            out = out + self.identity(x)
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs, each followed by BN."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shortcut: bool = True,
        se_reduction: int | None = None,
        deformable: bool = False,
    ) -> None:
        super().__init__(width, stride, downsample, shortcut, se_reduction)
        self.conv1 = conv3x3(in_ch, width, stride, deformable)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, deformable=deformable)
        self.bn2 = nn.BatchNorm2d(width)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, each followed by BN."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shortcut: bool = True,
        se_reduction: int | None = None,
        deformable: bool = False,
    ) -> None:
        super().__init__(width * self.expansion, stride, downsample, shortcut, se_reduction)
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, deformable)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(nn.Module):
    """A residual network from its block type, blocks per stage and stage widths.

    ``stem="imagenet"``: 7x7/2 conv and 3x3/2 max pool (total stride 32). ``stem="cifar"``: one 3x3 conv
    (total stride 4 with three stages). ``shortcut`` is ``"B"`` (1x1 projection where the shape
    changes), ``"A"`` (zero-padding identity) or ``"none"`` (the plain network). ``se_reduction``
    puts an SE block in every residual block; ``deform_stages`` lists the stages (1-based) whose
    3x3 convs are deformable. ``norm="none"`` drops every BatchNorm; ``weight_init`` is one of
    ``WEIGHT_INITS`` (see the module docstring).
    """

    def __init__(
        self,
        block: type[ResidualBlock],
        layers: list[int],
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        shortcut: str = "B",
        se_reduction: int | None = None,
        deform_stages: tuple[int, ...] = (),
        zero_init_residual: bool = False,
        norm: str = "batch",
        weight_init: str = "he",
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B", "none"):
            raise ValueError(f"shortcut must be 'A', 'B' or 'none', got {shortcut!r}")
        if norm not in ("batch", "none") or weight_init not in WEIGHT_INITS:
            raise ValueError(
                f"norm must be 'batch' or 'none' and weight_init one of {', '.join(WEIGHT_INITS)}; "
                f"got {norm!r}, {weight_init!r}"
            )
        if norm == "none" and zero_init_residual:
            raise ValueError("zero_init_residual zeroes a BatchNorm's scale: it needs norm='batch'")
        self.shortcut = shortcut
        self.in_ch = widths[0]
        if stem == "imagenet":
            self.conv1: nn.Module = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(in_chans, widths[0])
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        for i, (width, blocks) in enumerate(zip(widths, layers, strict=True)):
            stage = self._make_layer(
                block,
                width,
                blocks,
                stride=1 if i == 0 else 2,
                se_reduction=se_reduction,
                deformable=i + 1 in deform_stages,
            )
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        # The smallest input whose last feature map is still 1x1 without relying on padding alone.
        self.min_input_size = (4 if stem == "imagenet" else 1) * 2 ** (len(layers) - 1)
        self.default_input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32)
        if norm == "none":  # swapped out after building, so that no block needs an option of its own
            for parent in list(self.modules()):
                for name, child in parent.named_children():
                    if isinstance(child, nn.BatchNorm2d):
                        setattr(parent, name, nn.Identity())
        self._init_weights(zero_init_residual, weight_init)

    def _make_layer(
        self,
        block: type[ResidualBlock],
        width: int,
        blocks: int,
        stride: int,
        se_reduction: int | None,
        deformable: bool,
    ) -> nn.Sequential:
        out_ch = width * block.expansion
        downsample = None
        if self.shortcut != "none" and (stride != 1 or self.in_ch != out_ch):
            if self.shortcut == "B":
                downsample = nn.Sequential(conv1x1(self.in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
            else:
                downsample = ZeroPadShortcut(stride, out_ch - self.in_ch)
        options = {
            "shortcut": self.shortcut != "none",
            "se_reduction": se_reduction,
            "deformable": deformable,
        }
        layers = [block(self.in_ch, width, stride, downsample, **options)]
        self.in_ch = out_ch
        layers += [block(out_ch, width, **options) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @skip_on_meta
    def _init_weights(self, zero_init_residual: bool, weight_init: str = "he") -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, DeformConv2d)) and weight_init == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.Conv2d, DeformConv2d, nn.Linear)) and weight_init == "normal":
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, DeformConv2d):  # zero offsets: each deformable conv starts as a plain one
                m.reset_offsets()
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [m for name, m in self.named_children() if name.startswith("layer")]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


# ImageNet ResNets (Table 1 of the paper).
@register
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (He et al. 2015): 7x7 stem, four stages of [2, 2, 2, 2] basic blocks (two 3x3 convs)
    at 64-512 channels, projection shortcuts where the shape changes, 1.8 GFLOPs at 224x224."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (He et al. 2015): four stages of [3, 4, 6, 3] basic blocks at 64-512 channels; the
    residual twin of the paper's 34-layer plain net."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (He et al. 2015): four stages of [3, 4, 6, 3] bottleneck blocks (1x1 reduce, 3x3,
    1x1 expand by 4) ending at 2048 channels; the stride sits on the 3x3 conv (v1.5)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (He et al. 2015): bottleneck stages of [3, 4, 23, 3] blocks."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (He et al. 2015): bottleneck stages of [3, 8, 36, 3] blocks, the deepest of the
    paper's ImageNet networks."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


# CIFAR ResNets, depth 6n + 2 (Section 4.2), and their plain twins.
def cifar_resnet(depth: int, shortcut: str = "A", **kwargs) -> ResNet:
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], widths=(16, 32, 64), stem="cifar", shortcut=shortcut, **kwargs)


@register
def resnet20(**kwargs) -> ResNet:
    """ResNet-20 for 32x32 images (He et al. 2015, Sec. 4.2): a 3x3 stem and three stages of 3 basic
    blocks at 16/32/64 channels with parameter-free zero-padding shortcuts; 0.27M parameters."""
    return cifar_resnet(20, **kwargs)


@register
def resnet32(**kwargs) -> ResNet:
    """ResNet-32 for 32x32 images: three stages of 5 basic blocks at 16/32/64 channels."""
    return cifar_resnet(32, **kwargs)


@register
def resnet44(**kwargs) -> ResNet:
    """ResNet-44 for 32x32 images: three stages of 7 basic blocks at 16/32/64 channels."""
    return cifar_resnet(44, **kwargs)


# Twelve epochs left it at 98.4% on mnist5k, just short of resnet20's: a deeper net takes longer.
@register(recipe=Recipe(epochs=20, min_steps=600))
def resnet56(**kwargs) -> ResNet:
    """ResNet-56 for 32x32 images: three stages of 9 basic blocks at 16/32/64 channels; the deep net of
    the paper's degradation experiment (Fig. 6)."""
    return cifar_resnet(56, **kwargs)


@register
def resnet110(**kwargs) -> ResNet:
    """ResNet-110 for 32x32 images: three stages of 18 basic blocks at 16/32/64 channels; 1.7M
    parameters."""
    return cifar_resnet(110, **kwargs)


@register
def plain20(**kwargs) -> ResNet:
    """The plain twin of ResNet-20: the same 19 convs and FC without any shortcut, for the degradation
    experiment (He et al. 2015, Fig. 6)."""
    return cifar_resnet(20, shortcut="none", **kwargs)


@register
def plain32(**kwargs) -> ResNet:
    """The plain twin of ResNet-32: 31 convs and an FC, no shortcuts."""
    return cifar_resnet(32, shortcut="none", **kwargs)


@register
def plain44(**kwargs) -> ResNet:
    """The plain twin of ResNet-44: 43 convs and an FC, no shortcuts."""
    return cifar_resnet(44, shortcut="none", **kwargs)


@register
def plain56(**kwargs) -> ResNet:
    """The plain twin of ResNet-56: 55 convs and an FC, no shortcuts; trains worse than plain20, which
    is the degradation problem."""
    return cifar_resnet(56, shortcut="none", **kwargs)


@register
def plain110(**kwargs) -> ResNet:
    """The plain twin of ResNet-110: 109 convs and an FC, no shortcuts."""
    return cifar_resnet(110, shortcut="none", **kwargs)


# The papers' recipes (`cnnlab train --recipe paper`; docs/papers.md renders them). He et al. 2016,
# Sec. 4.2: SGD with momentum 0.9 and weight decay 1e-4 at a batch of 128, lr 0.1 divided by 10 at
# 32k and 48k iterations, ending at 64k; 4-pixel padding, random 32x32 crops and flips.
HE_CIFAR = Recipe(
    epochs=164,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    decay_norm_and_bias=True,
    schedule="step",
    warmup_epochs=0.0,
    label_smoothing=0.0,
    batch_size=128,
    milestones=(0.5, 0.75),
    gamma=0.1,
    data="cifar10",
    source="He et al. 2016, Sec. 4.2",
    notes="64k iterations of 128 are 164 epochs of cifar10's 50,000 training images (390 steps each, "
    "63,960 in all; the paper chose 64k on a 45k/5k split, and it is the iteration count that the "
    "schedule is written in); the divisions at 32k and 48k are at 1/2 and 3/4 of the run. The "
    "augmentation is cnnlab's default at 32 px, as the paper's: 4-pixel padding, crops and flips",
)
# He et al. 2016, Sec. 3.4: batch 256, lr 0.1 divided by 10 when the error plateaus, up to 60e4
# iterations, weight decay 1e-4, momentum 0.9, no dropout.
HE_IMAGENET = Recipe(
    epochs=120,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    decay_norm_and_bias=True,
    schedule="step",
    warmup_epochs=0.0,
    label_smoothing=0.0,
    batch_size=256,
    milestones=(0.25, 0.5, 0.75),
    gamma=0.1,
    data="imagenet",
    source="He et al. 2016, Sec. 3.4",
    notes="60e4 iterations of 256 are 120 epochs of ImageNet's 1.28M images. The paper divides the "
    "rate by 10 when the error plateaus; cnnlab divides at fixed epochs 30, 60 and 90, where "
    "reimplementations do. Not reproduced: the scale augmentation (shorter side in [256, 480]), the "
    "colour augmentation and the 10-crop testing of the numbers; cnnlab's bottlenecks stride in the "
    "3x3 conv (v1.5)",
)
_PLAIN = "no number: Figure 6 (left) plots the CIFAR-10 error of plain-20 to plain-56, higher the deeper"

PAPER_RECIPE = {
    "resnet18": HE_IMAGENET.replace(
        reports="ImageNet val top-1 error 27.88%, 10-crop (Table 2; the paper's ResNet-18 has "
        "zero-padding shortcuts, option A, cnnlab's projections, B)"
    ),
    "resnet34": HE_IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 24.52%/7.46%, 10-crop (Table 3, B)"
    ),
    "resnet50": HE_IMAGENET.replace(reports="ImageNet val top-1/top-5 error 22.85%/6.71%, 10-crop (Table 3)"),
    "resnet101": HE_IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 21.75%/6.05%, 10-crop (Table 3)"
    ),
    "resnet152": HE_IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 21.43%/5.71%, 10-crop (Table 3)"
    ),
    "resnet20": HE_CIFAR.replace(reports="CIFAR-10 test error 8.75% (Table 6)"),
    "resnet32": HE_CIFAR.replace(reports="CIFAR-10 test error 7.51% (Table 6)"),
    "resnet44": HE_CIFAR.replace(reports="CIFAR-10 test error 7.17% (Table 6)"),
    "resnet56": HE_CIFAR.replace(reports="CIFAR-10 test error 6.97% (Table 6)"),
    "resnet110": HE_CIFAR.replace(
        warmup_epochs=1.0,
        warmup_factor=0.1,
        reports="CIFAR-10 test error 6.43%, best of 5 runs; 6.61±0.16% their mean (Table 6)",
        notes=HE_CIFAR.notes + ". ResNet-110 starts at 0.01 until the training error is below 80% "
        "(about 400 iterations) and then goes back to 0.1: cnnlab holds 0.01 for the first epoch (390 "
        "iterations)",
    ),
    "plain20": HE_CIFAR.replace(reports=_PLAIN),
    "plain32": HE_CIFAR.replace(reports=_PLAIN),
    "plain44": HE_CIFAR.replace(reports=_PLAIN),
    "plain56": HE_CIFAR.replace(reports=_PLAIN),
    "plain110": HE_CIFAR.replace(
        reports="no number: its error is above 60%, and Figure 6 (left) leaves it out"
    ),
}
