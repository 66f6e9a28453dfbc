"""`cnnlab experiment WHAT`: experiments that train several models and draw what they show."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ..errors import CnnlabError
from .common import JSON, SEED, Parser, print_files, wide_console


def parse_depths(text: str) -> list[int]:
    try:
        return [int(d) for d in text.split(",")]
    except ValueError:
        raise CnnlabError(f"--depths takes comma-separated depths, e.g. 20,56; got {text!r}") from None


def run_degradation(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.degradation import degradation

    options = {k: getattr(args, k) for k in ("batch_size", "lr", "precision") if getattr(args, k) is not None}
    return degradation(
        data=args.data,
        depths=parse_depths(args.depths),
        epochs=args.epochs,
        out_dir=args.out,
        seed=args.seed,
        data_root=args.data_root,
        live=False if args.no_progress else None,
        quiet=args.json,
        **options,
    )


def show_degradation(r: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title=f"the degradation problem on {r['data']}: {r['epochs']} epochs, seed {r['seed']}")
    for col in ("model", "depth", "params", "final train error", "final test error", "train time"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, run in r["runs"].items():
        table.add_row(
            name,
            str(run["depth"]),
            f"{run['params']:,}",
            f"{100 * run['train_error'][-1]:.2f}%",
            f"{100 * run['test_error'][-1]:.2f}%",
            f"{run['train_time_s']:.0f}s",
        )
    console = wide_console()
    console.print(table)
    console.print(
        f"{r['compared']}: the deeper plain net ends with a higher training error: "
        f"{'yes' if r['deeper_plain_higher_train_error'] else 'no'}; the deeper residual net does not: "
        f"{'yes' if r['deeper_residual_not_higher_train_error'] else 'no'}",
        highlight=False,
    )
    print_files(console, r)


def add(sub: Any) -> None:
    from ..analysis.degradation import DEFAULT_DEPTHS, DEFAULT_EPOCHS
    from ..runtime import PRECISIONS

    p = sub.add_parser(
        "experiment",
        help="experiments that train several models: the degradation problem",
        description="Each experiment trains its models into --out/runs and writes NAME.json and NAME.png.",
    )
    experiments = p.add_subparsers(
        dest="experiment", required=True, parser_class=Parser, metavar="EXPERIMENT"
    )

    a = experiments.add_parser(
        "degradation",
        parents=[JSON, SEED],
        help="plain and residual twins of two depths: does the deeper plain net train worse?",
        description="Trains plainD and resnetD for each depth D on the same data, seed and budget, and "
        "plots training and test error per epoch (He et al. 2016, Fig. 6). Writes degradation.json "
        "and degradation.png, and each run into OUT/runs/MODEL.",
    )
    # Not the DATA parent: here --data has a default of its own.
    a.add_argument("--data", default="mnist5k", help="a dataset name or path (default mnist5k)")
    a.add_argument("--data-root")
    a.add_argument(
        "--depths",
        default=",".join(map(str, DEFAULT_DEPTHS)),
        help=f"comma-separated depths of registered twins (default {','.join(map(str, DEFAULT_DEPTHS))})",
    )
    a.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs per network (default {DEFAULT_EPOCHS})"
    )
    a.add_argument("--batch-size", type=int)
    a.add_argument("--lr", type=float)
    a.add_argument("--precision", choices=PRECISIONS)
    a.add_argument("--out", default="degradation", help="output directory (default ./degradation)")
    a.add_argument("--no-progress", action="store_true", help="plain lines even on a terminal")
    a.set_defaults(func=run_degradation, show=show_degradation)
