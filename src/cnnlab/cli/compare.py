"""`cnnlab compare MODEL...`: one table of costs and measured speed, optionally trained side by side."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ..text import si
from .common import JSON, SEED, print_files, wide_console


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.compare import compare
    from ..analysis.summary import parse_input

    options = {k: getattr(args, k) for k in ("batch_size", "lr", "data_root") if getattr(args, k) is not None}
    return compare(
        args.models,
        parse_input(args.input) if args.input else None,
        train=args.train,
        data=args.data,
        epochs=args.epochs,
        out_dir=args.out,
        image_size=args.image_size,
        num_classes=args.num_classes,
        seed=args.seed,
        live=False if args.no_progress else None,
        quiet=args.json,
        **options,
    )


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    size = "x".join(map(str, r["input"]))
    title = f"{len(r['models'])} models at {size}, {r['num_classes']} classes; inference speed: fp32, "
    title += f"batch {r['batch_size']}, {r['threads']} threads"
    if r["trained"]:
        title += f"; trained {r['epochs']} epochs on {r['data']}"
    console = wide_console()
    console.print(title, highlight=False)
    table = Table()
    columns = ["model", "params", "MACs", "RF", "images/s"]
    columns += ["test acc", "train time", "train img/s"] if r["trained"] else []
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in r["models"]:
        cells = [
            row["model"],
            f"{row['params']:,}",
            si(row["macs"]),
            str(row["receptive_field"]),
            f"{row['images_per_s']:,.0f}",
        ]
        if r["trained"]:
            cells += [
                f"{100 * row['test_acc']:.2f}%",
                f"{row['train_time_s']:.0f}s",
                f"{row['train_images_per_s']:,.0f}",
            ]
        table.add_row(*cells)
    console.print(table)
    print_files(console, r)


def add(sub: Any) -> None:
    from ..analysis.compare import SPEED_BATCH_SIZE

    p = sub.add_parser(
        "compare",
        parents=[JSON, SEED],
        help="parameters, MACs, receptive field and measured images/s of several models (and accuracy)",
        description="A table and a chart (compare.json, compare.png): MACs against parameters, or with "
        "--train, accuracy against MACs after the same training budget, bubble area proportional to "
        "parameters.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--input", help="CxHxW (default: the models' usual input; with --train, the data's)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=1000,
        help="classes of the head (default 1000; with --train, the data's)",
    )
    p.add_argument("--train", action="store_true", help="train each model on --data for --epochs")
    # Not the DATA parent: here --data is the training data, with a default of its own.
    p.add_argument("--data", default="mnist5k", help="with --train: a dataset name or path (default mnist5k)")
    p.add_argument("--data-root")
    p.add_argument("--image-size", type=int, help="with --train: resize the images to this side")
    p.add_argument("--epochs", type=int, default=5, help="with --train: epochs per model (default 5)")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"with --train: the training batch (images/s are timed with batches of {SPEED_BATCH_SIZE})",
    )
    p.add_argument("--lr", type=float, help="with --train: peak learning rate")
    p.add_argument("--out", default="compare", help="output directory (default ./compare)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run, show=show)
