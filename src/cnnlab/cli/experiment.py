"""`cnnlab experiment NAME`: a claim of the course, measured over seeds, with a verdict."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ..errors import CnnlabError
from .common import JSON, Parser, print_files, seed_int, wide_console


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [seed_int(s) for s in text.split(",")]
    except argparse.ArgumentTypeError:
        raise CnnlabError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise CnnlabError(f"--seeds must be distinct, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..experiments import experiment
    from ..experiments.arms import make_setup

    module = experiment(args.experiment)
    options = {k: getattr(args, k) for k in ("batch_size", "lr", "precision") if getattr(args, k) is not None}
    setup = make_setup(
        args.out or args.experiment,
        data=args.data,
        seeds=parse_seeds(args.seeds) if args.seeds else None,
        quick=args.quick,
        data_root=args.data_root,
        epochs=args.epochs,
        live=False if args.no_progress else None,
        quiet=args.json,
        options=options,
    )
    extra = module.options(args) if hasattr(module, "options") else {}
    return module.run(setup, **extra)


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    from ..experiments.claims import cell, sentence

    console = wide_console()
    setup = r["setup"]
    title = f"{r['experiment']} on {setup['data']}, seeds {','.join(map(str, setup['seeds']))}"
    table = Table(title=title)
    columns = r["columns"]
    for _, label, _ in columns:
        table.add_column(label, justify="left" if label == "arm" else "right")
    for row in r["arms"]:
        table.add_row(*(cell(row.get(key), kind) for key, _, kind in columns))
    console.print(table)
    console.print(f"claim: {r['claim']}", highlight=False)
    for f in r["findings"]:
        console.print(f"  {f['verdict']}: {f['claim']} ({f['evidence']})", highlight=False)
    console.print(f"verdict: {sentence(r['verdict'])} ({r['seconds']:.0f} s in all)", highlight=False)
    print_files(console, r)


def add(sub: Any) -> None:
    from ..experiments import EXPERIMENTS, experiment
    from ..runtime import PRECISIONS

    p = sub.add_parser(
        "experiment",
        help="the course's claims, measured over seeds, each with a verdict",
        description="Each experiment trains or measures its arms under one budget, over three seeds, and "
        "writes NAME.json and NAME.png into --out (default ./NAME), with its runs under OUT/runs.",
    )
    experiments = p.add_subparsers(
        dest="experiment", required=True, parser_class=Parser, metavar="EXPERIMENT"
    )
    for name in EXPERIMENTS:
        module = experiment(name)
        a = experiments.add_parser(name, parents=[JSON], help=module.HELP, description=module.CLAIM)
        a.add_argument("--data", default="mnist5k", help="a dataset name or path (default mnist5k)")
        a.add_argument("--data-root")
        a.add_argument("--epochs", type=int, help="epochs of every arm (default: the experiment's budget)")
        a.add_argument("--seeds", help="comma-separated seeds (default 0,1,2; with --quick 0,1)")
        a.add_argument(
            "--quick",
            action="store_true",
            help="one epoch of two seeds on a few hundred digits: a smoke test",
        )
        a.add_argument("--batch-size", type=int)
        a.add_argument("--lr", type=float)
        a.add_argument("--precision", choices=PRECISIONS)
        a.add_argument("--out", help=f"output directory (default ./{name})")
        a.add_argument("--no-progress", action="store_true", help="plain lines even on a terminal")
        if hasattr(module, "add_arguments"):
            module.add_arguments(a)
        a.set_defaults(func=run, show=show)
