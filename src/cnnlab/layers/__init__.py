"""Blocks shared by several families, one module per block (as timm's ``layers/`` and torchvision's
``ops/``): ConvBNAct, SEBlock, DropPath, LocalResponseNorm, DeformConv2d, and the helpers
``make_divisible`` and ``skip_on_meta``.

Each is small, follows its paper, and is usable in any model.
"""

from .conv_bn_act import ConvBNAct
from .deform_conv import CONV_GEMM_MIN_DEPTH, OFFSET_LR_SCALE, DeformConv2d, deform_conv2d
from .drop_path import DropPath
from .helpers import make_divisible
from .lrn import LocalResponseNorm
from .se import SEBlock
from .weight_init import skip_on_meta

__all__ = [
    "CONV_GEMM_MIN_DEPTH",
    "OFFSET_LR_SCALE",
    "ConvBNAct",
    "DeformConv2d",
    "DropPath",
    "LocalResponseNorm",
    "SEBlock",
    "deform_conv2d",
    "make_divisible",
    "skip_on_meta",
]
