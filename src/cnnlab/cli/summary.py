"""`cnnlab summary MODEL`: parameters, output shape and a per-layer table of a model."""

from __future__ import annotations

import argparse
from typing import Any

from ..text import si
from .common import JSON, wide_console


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.summary import parse_input, summarize

    return summarize(
        args.model, parse_input(args.input) if args.input else None, num_classes=args.num_classes
    )


def show(s: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.table import Table

    table = Table(title=f"{s['model']}, input {'x'.join(map(str, s['input']))}")
    for col, justify in (
        ("layer", "left"),
        ("type", "left"),
        ("output", "right"),
        ("params", "right"),
        ("MACs", "right"),
        ("RF", "right"),
        ("stride", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for layer in s["layers"]:
        rf = layer["receptive_field"]
        table.add_row(
            layer["name"],
            layer["type"],
            "x".join(map(str, layer["output_shape"])),
            f"{layer['params']:,}",
            si(layer["macs"]) if layer["macs"] else "",
            "" if rf is None else str(rf),
            "" if layer["stride"] is None else str(layer["stride"]),
        )
    console = wide_console()
    console.print(table)
    console.print(
        f"parameters: {s['params']:,} (trainable {s['trainable_params']:,}); "
        f"MACs: {s['macs']:,} ({si(s['macs'])}); "
        f"receptive field: {s['receptive_field']}x{s['receptive_field']} px at stride {s['stride']}; "
        f"output {'x'.join(map(str, s['output_shape']))}; "
        f"minimum input {s['min_input_size']}x{s['min_input_size']}",
        highlight=False,
    )


def add(sub: Any) -> None:
    p = sub.add_parser(
        "summary", parents=[JSON], help="parameters, output shape and a per-layer table of a model"
    )
    p.add_argument("model")
    p.add_argument("--input", help="CxHxW, e.g. 3x224x224 (default: the model's usual input)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.set_defaults(func=run, show=show)
