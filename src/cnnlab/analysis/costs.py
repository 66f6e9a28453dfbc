"""What a forward pass costs: multiply-accumulates (MACs) per layer and in total, counted by torch's own
``torch.utils.flop_counter`` on the meta device (it needs shapes only), plus the receptive field of
every layer's output (``rf.py``).

FlopCounterMode reports FLOPs, two per multiply-accumulate for convolutions and matrix products; we
count only those ops (the conv and linear layers) and halve them. Normalization, activations, pooling
and additions are not counted, as in the usual tables (torchvision's "GFLOPS", which are MACs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .rf import layer_receptive_fields

aten = torch.ops.aten
# The ops whose FLOPs are 2 x MACs of a conv or linear layer.
MAC_OPS = (aten.convolution, aten.mm, aten.addmm, aten.bmm, aten.baddbmm)


def _macs(counts: dict[Any, int]) -> int:
    return sum(n for op, n in counts.items() if op in MAC_OPS) // 2


def model_costs(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, Any]:
    """One forward pass of a batch of one on the meta device, in eval mode. Returns ``macs`` (total),
    ``receptive_field`` and ``stride`` (of the last spatial feature map), and ``layers``: for each leaf
    module that ran, by name, its ``macs`` and the ``RF`` of its output. ``model`` may live on any
    device; a copy is not made, so build it on the meta device to make this free."""
    device = next((p.device for p in model.parameters()), torch.device("meta"))
    flops = FlopCounterMode(display=False)
    rfs, final = layer_receptive_fields(model, input_size, device, flops)
    counts = flops.get_flop_counts()
    # FlopCounterMode names modules "<RootClass>.<qualified name>".
    prefix = type(model).__name__ + "."
    layers = {name: {"macs": _macs(counts.get(prefix + name, {})), "rf": rf} for name, rf in rfs.items()}
    return {
        "macs": _macs(counts.get("Global", {})),
        "receptive_field": final.size if final else None,
        "stride": final.stride if final else None,
        "layers": layers,
    }


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of the conv and linear layers for one image of ``input_size``."""
    return model_costs(model, input_size)["macs"]
