"""A model's summary: parameters, output shape, MACs, receptive fields and a per-layer table, computed
on the meta device so that even the largest model costs no memory and no time."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError, InputSizeError
from ..models import check_input_size, create_model, min_input_size
from ..text import first_line
from .costs import model_costs

MAX_INPUT = 2**16  # channels or pixels a side


def parse_input(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` -> (3, 224, 224)."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", text)
    sizes = [int(g) for g in m.groups()] if m else []
    if not sizes or not all(1 <= n <= MAX_INPUT for n in sizes):
        raise CnnlabError(
            f"--input must be written CxHxW with numbers from 1 to {MAX_INPUT}, e.g. 3x224x224; "
            f"got {text[:40]!r}"
        )
    return sizes[0], sizes[1], sizes[2]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(
    name: str, input_size: tuple[int, int, int] | None = None, num_classes: int = 1000, **kwargs: Any
) -> dict[str, Any]:
    """Parameters, output shape, MACs, receptive field and one row per leaf layer (name, type, output
    shape, parameters, MACs, and the receptive field and stride of its output in input pixels: None
    once the spatial map has been pooled globally or flattened)."""
    with torch.device("meta"):
        model = create_model(
            name, num_classes=num_classes, in_chans=input_size[0] if input_size else 3, **kwargs
        )
    input_size = input_size or getattr(model, "default_input_size", (3, 224, 224))
    check_input_size(model, name, input_size)
    layers: list[dict[str, Any]] = []

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        layers.append(
            {
                "name": names[module],
                "type": type(module).__name__,
                "output_shape": list(out.shape[1:]),
                "params": sum(p.numel() for p in module.parameters(recurse=False)),
            }
        )

    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            output = model.eval()(torch.empty(1, *input_size, device="meta"))
    except RuntimeError as e:
        raise InputSizeError(
            f"{name} cannot take {'x'.join(map(str, input_size))} inputs: {first_line(e)}"
        ) from None
    finally:
        for h in hooks:
            h.remove()
    total = count_params(model)
    costs = model_costs(model, input_size)
    for layer in layers:
        c = costs["layers"].get(layer["name"])
        layer["macs"] = c["macs"] if c else 0
        spatial = c is not None and c["rf"].spatial
        layer["receptive_field"] = c["rf"].size if spatial else None
        layer["stride"] = c["rf"].stride if spatial else None
    return {
        "model": name,
        "input": list(input_size),
        "output_shape": list(output.shape[1:]),
        "params": total,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "min_input_size": min_input_size(model),
        "macs": costs["macs"],
        "receptive_field": costs["receptive_field"],
        "stride": costs["stride"],
        "layers": layers,
    }
