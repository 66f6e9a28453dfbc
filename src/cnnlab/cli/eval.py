"""`cnnlab eval RUN_DIR`: a run's model on its test set or another dataset's."""

from __future__ import annotations

import argparse
from typing import Any

from .common import DATA, DEVICE, INFER, JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..predict import evaluate_run

    return evaluate_run(
        args.run_dir,
        data=args.data,
        data_root=args.data_root,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
    )


def show(result: dict[str, Any], args: argparse.Namespace) -> None:
    if "note" in result:
        print(result["note"])
    print(
        f"{result['model']} on {result['dataset']} ({result['images']} test images): "
        f"top-1 {100 * result['test_acc']:.2f}%  top-5 {100 * result['test_top5']:.2f}%  "
        f"loss {result['test_loss']:.4f}  ({result['backend']}, {result['precision']})"
    )


def add(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        parents=[DATA, DEVICE, INFER, JSON],
        help="evaluate a run's model on its test set or another dataset",
    )
    p.add_argument("run_dir")
    p.set_defaults(func=run, show=show)
