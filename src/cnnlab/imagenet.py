"""ImageNet-1k for converted checkpoints: the 1000 class names, and how each library's pretrained
weights expect an image to be prepared at evaluation time.

A pretrained model only gives its accuracy on images prepared as in its evaluation: shorter side
resized to ``resize`` (with the library's interpolation), the centre ``crop`` x ``crop`` cut out,
then normalized. The values below are those of the default ImageNet weights of torchvision 0.28
and timm 1.0 for each model cnnlab converts; a checkpoint trained another way may want others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 1000
_CLASSES_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"


@cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the order of the models' logits (WordNet id order)."""
    names = tuple(_CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    assert len(names) == NUM_CLASSES, f"{_CLASSES_FILE} is damaged: {len(names)} names"
    return names


@dataclass(frozen=True)
class Preprocessing:
    """Shorter side to ``resize``, centre ``crop``, then ``(x - mean) / std`` per channel."""

    crop: int
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD


def _timm(
    crop: int, crop_pct: float, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD
) -> Preprocessing:
    # timm states the crop as a fraction of the resized side and rounds the side down.
    return Preprocessing(crop, math.floor(crop / crop_pct), "bicubic", mean, std)


# torchvision's classic models (AlexNet, VGG, ResNet, DenseNet): 256 then 224, bilinear.
_TORCHVISION_DEFAULT = Preprocessing(224, 256)
_TORCHVISION = {
    # GoogLeNet's weights come from Caffe and take (x - 0.5) / 0.5; torchvision's transform_input
    # turns its ImageNet-normalized input into that, which these mean and std do directly.
    "googlenet": Preprocessing(224, 256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "efficientnet_b0": Preprocessing(224, 256, "bicubic"),
    "efficientnet_b1": Preprocessing(240, 255),
    "efficientnet_b2": Preprocessing(288, 288, "bicubic"),
    "efficientnet_b3": Preprocessing(300, 320, "bicubic"),
    "efficientnet_b4": Preprocessing(380, 384, "bicubic"),
    "efficientnet_b5": Preprocessing(456, 456, "bicubic"),
    "efficientnet_b6": Preprocessing(528, 528, "bicubic"),
    "efficientnet_b7": Preprocessing(600, 600, "bicubic"),
}
# timm's default pretrained tag of each model (input size, crop_pct, mean and std of its config).
_TIMM_DEFAULT = _timm(224, 0.875)
_TIMM = {
    **{f"resnet{d}": _timm(224, 0.95) for d in (18, 34, 50, 101, 152)},
    "seresnet50": _timm(224, 0.95),
    "efficientnet_b0": _timm(224, 0.875),
    "efficientnet_b1": _timm(240, 0.9, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "efficientnet_b2": _timm(256, 0.875),
    "efficientnet_b3": _timm(288, 0.875),
    "efficientnet_b4": _timm(320, 0.875),
    "efficientnet_b5": _timm(448, 1.0),
    "efficientnet_b6": _timm(528, 0.942),
    "efficientnet_b7": _timm(600, 0.949),
}


def preprocessing(source: str, model: str) -> Preprocessing:
    """The evaluation preprocessing of ``source``'s (torchvision or timm) ImageNet weights of ``model``."""
    if source == "timm":
        return _TIMM.get(model, _TIMM_DEFAULT)
    return _TORCHVISION.get(model, _TORCHVISION_DEFAULT)
