"""Weights filled from each tensor's name, so a reference model and cnnlab's can hold the same ones.

The conversion fixtures (tests/fixtures/reference/) hold a reference model's key/shape manifest and
its logits once its tensors are filled by `filled_state`; scripts/reference_fixtures.py records them
with torchvision and timm, and the tests rebuild the very same tensors from the manifest alone.
Values come from torch's CPU generator seeded from the key: the same on every machine (its stream
has not changed across torch releases in years; the fixtures were recorded with torch 2.13).
"""

from __future__ import annotations

import math
import zlib

import torch


def seeded_uniform(n: int, key: str) -> torch.Tensor:
    """``n`` numbers in [0, 1) from torch's CPU generator seeded with the CRC-32 of ``key``."""
    return torch.rand(n, generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))


def filled_tensor(key: str, shape: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor for parameter ``key``: He-scaled weights, BN statistics a trained net could have."""
    n = math.prod(shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=dtype)
    u = seeded_uniform(n, key)  # float32, scaled in place: VGG's 100M-weight layer is one tensor
    if key.endswith("running_var"):
        u.add_(0.5)
    elif key.endswith("running_mean") or key.endswith("bias"):
        u.sub_(0.5).mul_(0.2)
    elif len(shape) == 1:  # a norm layer's scale
        u.mul_(0.5).add_(0.75)
    else:  # uniform with the variance 2 / fan_in of He's initialisation
        u.mul_(2).sub_(1).mul_(math.sqrt(6 * shape[0] / n))
    return u.to(dtype).reshape(shape)


def filled_state(manifest: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """The state_dict of a key -> shape manifest, every tensor filled from its name."""
    return {
        key: filled_tensor(key, shape, torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
        for key, shape in manifest.items()
    }


def filled_input(size: int, channels: int = 3) -> torch.Tensor:
    """A (1, channels, size, size) input in [-1, 1)."""
    return (2 * seeded_uniform(channels * size * size, "__input__") - 1).reshape(1, channels, size, size)
