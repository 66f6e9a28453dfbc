"""What several test files share: one home for each helper."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab import create_model, rundir
from cnnlab.runconfig import DataInfo, RunConfig


def save_run(
    model: nn.Module,
    out: Path,
    name: str,
    classes: list[str],
    input_size: list[int],
    mean: list[float] | None = None,
    std: list[float] | None = None,
    **model_kwargs: Any,
) -> Path:
    """A run directory holding ``model`` untrained, as ``cnnlab convert`` writes one."""
    c = input_size[0]
    data = DataInfo(
        name="synthetic",
        source="synthetic",
        classes=classes,
        mean=mean or [0.5] * c,
        std=std or [0.25] * c,
        input_size=input_size,
    )
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_config(out, RunConfig(name, len(classes), c, data, model_kwargs=model_kwargs))
    rundir.save_weights(model, out / rundir.WEIGHTS)
    return out


def meta_model(name: str, **kwargs: Any) -> nn.Module:
    """A registered model built on the meta device: shapes and counts only, built in no time."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest absolute difference, relative to the largest magnitude of ``expected``."""
    return ((got - expected).abs().max() / expected.abs().max()).item()


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """``array`` as an IDX file (MNIST's format): the magic number, the sizes, then the bytes."""
    magic = 0x800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


# (model, input side): each model's smallest valid input, or a little more, to keep the file fast.
# AlexNet's FC layers are narrowed (61M parameters otherwise); VGG has no such option.
FAMILIES = [
    ("resnet20", 8),
    ("vgg11_bn", 32),
    ("alexnet", 63),
    ("googlenet", 15),
    ("densenet_bc_100", 8),
    ("efficientnet_b0", 32),
    ("se_resnet20", 8),
    ("simple_cnn", 12),
    ("dcn_resnet20", 8),
]
CLASSES = ["a", "b", "c", "d", "e"]
# Small classifiers: what these checks test (folding, export, engines) lies in the convolutions, and the
# full 4096-wide ones make VGG's ONNX file 500 MB.
MODEL_KWARGS = {"alexnet": {"widths": [16, 32, 32, 32, 32], "hidden": 64}, "vgg11_bn": {"hidden": 64}}


def make_run(root: Path, name: str, side: int) -> Path:
    """A run directory of an untrained model, written with the rundir functions `cnnlab train` uses.
    BatchNorm statistics are randomized so that folding them into the convolutions is not a no-op."""
    torch.manual_seed(0)
    kwargs = MODEL_KWARGS.get(name, {})
    model = create_model(name, num_classes=len(CLASSES), in_chans=3, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return save_run(
        model, root / name, name, CLASSES, [3, side, side], [0.5, 0.4, 0.3], [0.2, 0.2, 0.2], **kwargs
    )


def require_native() -> None:
    """Skip unless deformable convolution's C++ kernel is built; under CI, where `make test` builds it,
    fail instead."""
    from cnnlab.layers import native

    if native.available():
        return
    if os.environ.get("CI"):
        pytest.fail("the deformable convolution kernel is not built: `make` should have built it")
    pytest.skip("the deformable convolution kernel is not built: `make test` builds it")
