"""SENet: Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (arXiv:1709.01507).

The SE-ResNets: ResNet (resnet.py) with an SE block at the end of every residual branch, before the
addition, with reduction r = 16. The squeeze is a global average pool, the excitation two FC layers
(C -> C/r -> C, ReLU then sigmoid) whose output scales the branch's channels.

What differs from the paper: the reduced width C/r is rounded to a multiple of 8 (at least 8) as
timm's ``seresnet`` does, so the parameter counts equal timm's; the CIFAR variants add SE blocks to the
original (post-activation) ResNets rather than to the pre-activation ResNet-110 of the paper's CIFAR
experiments.
"""

from __future__ import annotations

from .registry import register
from .resnet import HE_CIFAR, HE_IMAGENET, BasicBlock, Bottleneck, ResNet, cifar_resnet


@register
def se_resnet18(**kwargs) -> ResNet:
    """SE-ResNet-18 (Hu et al. 2018): ResNet-18 with squeeze-and-excitation (reduction 16) on every
    residual branch."""
    return ResNet(BasicBlock, [2, 2, 2, 2], se_reduction=16, **kwargs)


@register
def se_resnet34(**kwargs) -> ResNet:
    """SE-ResNet-34 (Hu et al. 2018): ResNet-34 with squeeze-and-excitation (reduction 16)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], se_reduction=16, **kwargs)


@register
def se_resnet50(**kwargs) -> ResNet:
    """SE-ResNet-50 (Hu et al. 2018): ResNet-50 with squeeze-and-excitation (reduction 16) after the
    last 1x1 conv of every bottleneck; about 10% more parameters for a 1.5-point ImageNet gain."""
    return ResNet(Bottleneck, [3, 4, 6, 3], se_reduction=16, **kwargs)


@register
def se_resnet101(**kwargs) -> ResNet:
    """SE-ResNet-101 (Hu et al. 2018): ResNet-101 with squeeze-and-excitation (reduction 16)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], se_reduction=16, **kwargs)


@register
def se_resnet152(**kwargs) -> ResNet:
    """SE-ResNet-152 (Hu et al. 2018): ResNet-152 with squeeze-and-excitation (reduction 16)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], se_reduction=16, **kwargs)


@register
def se_resnet20(**kwargs) -> ResNet:
    """SE-ResNet-20 for 32x32 images: ResNet-20 with squeeze-and-excitation (reduction 16) in every
    block."""
    return cifar_resnet(20, se_reduction=16, **kwargs)


@register
def se_resnet32(**kwargs) -> ResNet:
    """SE-ResNet-32 for 32x32 images: ResNet-32 with squeeze-and-excitation (reduction 16)."""
    return cifar_resnet(32, se_reduction=16, **kwargs)


@register
def se_resnet44(**kwargs) -> ResNet:
    """SE-ResNet-44 for 32x32 images: ResNet-44 with squeeze-and-excitation (reduction 16)."""
    return cifar_resnet(44, se_reduction=16, **kwargs)


@register
def se_resnet56(**kwargs) -> ResNet:
    """SE-ResNet-56 for 32x32 images: ResNet-56 with squeeze-and-excitation (reduction 16)."""
    return cifar_resnet(56, se_reduction=16, **kwargs)


@register
def se_resnet110(**kwargs) -> ResNet:
    """SE-ResNet-110 for 32x32 images: ResNet-110 with squeeze-and-excitation (reduction 16), the
    network of the SE paper's CIFAR experiments."""
    return cifar_resnet(110, se_reduction=16, **kwargs)


# Hu et al. 2018, Sec. 5 ("Implementation"; Sec. 5.1 of the journal version): synchronous SGD,
# momentum 0.9, batch 1024, lr 0.6 divided by 10 every 30 epochs, 100 epochs. Their CIFAR experiments
# (journal version, Sec. 5.1) train each baseline with the hyper-parameters of its own paper; for
# ResNet-110 that is He et al.'s pre-activation paper (2016b), whose appendix keeps the recipe of He et
# al. 2016, Sec. 4.2, and starts every CIFAR run at 0.01 for 400 iterations.
_HU_IMAGENET = HE_IMAGENET.replace(
    epochs=100,
    lr=0.6,
    batch_size=1024,
    milestones=(0.3, 0.6, 0.9),
    source="Hu et al. 2018, Sec. 5",
    notes="Weight decay is not stated: cnnlab keeps He et al.'s 1e-4. Not reproduced: the random-size "
    "crops and aspect ratios of the paper's augmentation",
)
_HU_CIFAR = HE_CIFAR.replace(
    source="Hu et al. 2018, journal version Sec. 5.1: the baselines' own recipes, He et al. 2016's, Sec. 4.2"
)
_NO_SE_CIFAR_NUMBER = "Hu et al. train ResNet-110 and ResNet-164 on CIFAR, not this depth"

PAPER_RECIPE = {
    "se_resnet18": _HU_IMAGENET,
    "se_resnet34": _HU_IMAGENET,
    "se_resnet50": _HU_IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 23.29%/6.62%, one 224 crop (Table 2; ResNet-50 "
        "re-implemented: 24.80%/7.48%)"
    ),
    "se_resnet101": _HU_IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 22.38%/6.07%, one 224 crop (Table 2)"
    ),
    "se_resnet152": _HU_IMAGENET.replace(
        reports="ImageNet val top-1/top-5 error 21.57%/5.73%, one 224 crop (Table 2)"
    ),
    "se_resnet20": _HU_CIFAR.replace(notes=f"{_NO_SE_CIFAR_NUMBER}. {HE_CIFAR.notes}"),
    "se_resnet32": _HU_CIFAR.replace(notes=f"{_NO_SE_CIFAR_NUMBER}. {HE_CIFAR.notes}"),
    "se_resnet44": _HU_CIFAR.replace(notes=f"{_NO_SE_CIFAR_NUMBER}. {HE_CIFAR.notes}"),
    "se_resnet56": _HU_CIFAR.replace(notes=f"{_NO_SE_CIFAR_NUMBER}. {HE_CIFAR.notes}"),
    "se_resnet110": _HU_CIFAR.replace(
        warmup_epochs=1.0,
        warmup_factor=0.1,
        source="Hu et al. 2018, journal version Sec. 5.1: the recipe of its baseline's paper, He et al. "
        "2016b (Appendix), He et al. 2016's Sec. 4.2 with 0.01 for the first 400 iterations",
        reports="CIFAR-10 test error 5.21% (Table 4 of the journal version; its baseline, He et al.'s "
        "pre-activation ResNet-110, 6.37% as that paper reports it)",
        notes=HE_CIFAR.notes + ". The pre-activation paper starts every CIFAR run at 0.01 for 400 "
        "iterations before going back to 0.1: cnnlab holds 0.01 for the first epoch (390 iterations). "
        "Hu et al. add SE blocks to the pre-activation ResNet-110; cnnlab's se_resnet110 is the original "
        "(post-activation) ResNet-110 with them",
    ),
}
