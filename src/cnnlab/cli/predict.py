"""`cnnlab predict RUN_DIR IMAGE...`: the most likely classes of image files."""

from __future__ import annotations

import argparse
from typing import Any

from .common import DEVICE, INFER, JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..predict import predict_files

    return {
        "predictions": predict_files(
            args.run_dir, args.images, args.topk, args.device, args.backend, args.precision
        )
    }


def show(result: dict[str, Any], args: argparse.Namespace) -> None:
    for r in result["predictions"]:
        guesses = ", ".join(f"{p['label']} {100 * p['prob']:.1f}%" for p in r["top"])
        print(f"{r['image']}: {guesses}")


def add(sub: Any) -> None:
    p = sub.add_parser(
        "predict", parents=[DEVICE, INFER, JSON], help="classify image files with a run's model"
    )
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=3)
    p.set_defaults(func=run, show=show)
