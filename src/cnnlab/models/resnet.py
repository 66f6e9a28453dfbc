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

What differs from the paper: in the bottleneck the stride sits on the 3x3 conv rather than the first
1x1 ("ResNet v1.5", as torchvision does; same parameters, better accuracy), and parameter names follow
torchvision's (``conv1``, ``bn1``, ``layer1.0.downsample``) so its checkpoints map one to one. Weights
use He (Kaiming) normal initialization in fan-out mode; BN starts at weight 1, bias 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
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


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``shortcut=False`` makes the plain twin (no identity path at all)."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shortcut = shortcut

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(BasicBlock):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shortcut: bool = True,
    ) -> None:
        nn.Module.__init__(self)
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shortcut = shortcut

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(nn.Module):
    """A residual network from its block type, blocks per stage and stage widths.

    ``stem="imagenet"``: 7x7/2 conv and 3x3/2 max pool (total stride 32). ``stem="cifar"``: one 3x3 conv
    (total stride 4 with three stages). ``shortcut`` is ``"B"`` (1x1 projection where the shape
    changes), ``"A"`` (zero-padding identity) or ``"none"`` (the plain network).
    """

    def __init__(
        self,
        block: type[BasicBlock],
        layers: list[int],
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        shortcut: str = "B",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B", "none"):
            raise ValueError(f"shortcut must be 'A', 'B' or 'none', got {shortcut!r}")
        self.shortcut = shortcut
        self.in_ch = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(in_chans, widths[0])
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        for i, (width, blocks) in enumerate(zip(widths, layers, strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, width, blocks, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        # The smallest input whose last feature map is still 1x1 without relying on padding alone.
        self.min_input_size = (4 if stem == "imagenet" else 1) * 2 ** (len(layers) - 1)
        self.default_input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: type[BasicBlock], width: int, blocks: int, stride: int) -> nn.Sequential:
        out_ch = width * block.expansion
        downsample = None
        if self.shortcut != "none" and (stride != 1 or self.in_ch != out_ch):
            if self.shortcut == "B":
                downsample = nn.Sequential(conv1x1(self.in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
            else:
                downsample = ZeroPadShortcut(stride, out_ch - self.in_ch)
        has_shortcut = self.shortcut != "none"
        layers = [block(self.in_ch, width, stride, downsample, shortcut=has_shortcut)]
        self.in_ch = out_ch
        layers += [block(out_ch, width, shortcut=has_shortcut) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, BasicBlock):
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
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register
def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register
def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


# CIFAR ResNets, depth 6n + 2 (Section 4.2), and their plain twins.
def cifar_resnet(depth: int, shortcut: str = "A", **kwargs) -> ResNet:
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], widths=(16, 32, 64), stem="cifar", shortcut=shortcut, **kwargs)


@register
def resnet20(**kwargs) -> ResNet:
    return cifar_resnet(20, **kwargs)


@register
def resnet32(**kwargs) -> ResNet:
    return cifar_resnet(32, **kwargs)


@register
def resnet44(**kwargs) -> ResNet:
    return cifar_resnet(44, **kwargs)


@register
def resnet56(**kwargs) -> ResNet:
    return cifar_resnet(56, **kwargs)


@register
def resnet110(**kwargs) -> ResNet:
    return cifar_resnet(110, **kwargs)


@register
def plain20(**kwargs) -> ResNet:
    return cifar_resnet(20, shortcut="none", **kwargs)


@register
def plain32(**kwargs) -> ResNet:
    return cifar_resnet(32, shortcut="none", **kwargs)


@register
def plain44(**kwargs) -> ResNet:
    return cifar_resnet(44, shortcut="none", **kwargs)


@register
def plain56(**kwargs) -> ResNet:
    return cifar_resnet(56, shortcut="none", **kwargs)


@register
def plain110(**kwargs) -> ResNet:
    return cifar_resnet(110, shortcut="none", **kwargs)
