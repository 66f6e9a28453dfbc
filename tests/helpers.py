"""What several test files share: one home for each helper."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
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
