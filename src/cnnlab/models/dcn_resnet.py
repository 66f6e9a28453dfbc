"""Deformable ConvNets: Dai, Qi, Xiong, Li, Zhang, Hu and Wei, "Deformable Convolutional Networks",
ICCV 2017 (arXiv:1703.06211).

The deformable ResNets: ResNet (resnet.py) whose 3x3 convs in the last stage are deformable
convolutions (layers/deform_conv.py), as the paper does for ResNet-101's conv5 stage. Each samples
its 3x3 taps at the regular grid plus a learned 2D offset per tap and position, bilinearly.

What differs from the paper: the offsets start at zero, so training begins from the plain network;
the paper trains deformable layers only when fine-tuning detection and segmentation networks, so the
recipes here are He et al.'s.
"""

from __future__ import annotations

from .registry import register
from .resnet import HE_CIFAR, HE_IMAGENET, Bottleneck, ResNet, cifar_resnet


@register
def dcn_resnet50(**kwargs) -> ResNet:
    """Deformable ResNet-50 (Dai et al. 2017): ResNet-50 whose three 3x3 convs in the last stage are
    deformable convolutions with a learned 2D offset per kernel tap, sampled bilinearly; the offsets
    start at zero, so it begins as ResNet-50."""
    return ResNet(Bottleneck, [3, 4, 6, 3], deform_stages=(4,), **kwargs)


@register
def dcn_resnet20(**kwargs) -> ResNet:
    """Deformable ResNet-20 for 32x32 images: ResNet-20 whose six 3x3 convs in the last stage (64
    channels) are deformable convolutions with learned offsets, zero at the start."""
    return cifar_resnet(20, deform_stages=(3,), **kwargs)


PAPER_RECIPE = {
    "dcn_resnet50": HE_IMAGENET.replace(
        source="Dai et al. 2017 give no recipe for it: He et al. 2016, Sec. 3.4",
        notes="Dai et al. train deformable layers only when fine-tuning detection and segmentation "
        "networks and report no ImageNet classification of a deformable ResNet-50: this is He et "
        "al.'s ImageNet recipe. " + HE_IMAGENET.notes,
    ),
    "dcn_resnet20": HE_CIFAR.replace(
        source="Dai et al. 2017 train nothing on CIFAR: He et al. 2016, Sec. 4.2",
        notes="Dai et al. give no CIFAR recipe: this is He et al.'s. " + HE_CIFAR.notes,
    ),
}
