"""`cnnlab eval RUN_DIR`: a run's model on its test set or another dataset's, and where it fails: the
confusion matrix, per-class scores, the most confused pairs, the most confidently wrong images and the
calibration, written beside the run (or into --out)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import DATA, DEVICE, INFER, JSON

SHOWN_PAIRS = 3  # the most confused pairs printed; --json and eval.json have more


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..predict import evaluate_run

    return evaluate_run(
        args.run_dir,
        data=args.data,
        data_root=args.data_root,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        write_to=args.out if args.out is not None else args.run_dir,
    )


def show(result: dict[str, Any], args: argparse.Namespace) -> None:
    if "note" in result:
        print(result["note"])
    print(
        f"{result['model']} on {result['dataset']} ({result['images']} test images): "
        f"top-1 {100 * result['test_acc']:.2f}%  top-5 {100 * result['test_top5']:.2f}%  "
        f"loss {result['test_loss']:.4f}  ({result['backend']}, {result['precision']})"
    )
    f = result["failures"]
    print(
        f"macro F1 {100 * f['macro_f1']:.2f}%  calibration error (ECE) {100 * f['calibration']['ece']:.2f}%"
    )
    if f["confused_pairs"]:
        pairs = ", ".join(
            f"{p['true']} as {p['predicted']} ({p['count']})" for p in f["confused_pairs"][:SHOWN_PAIRS]
        )
        print(f"most confused: {pairs}")
    files = result["files"]
    print(f"wrote {files['json']}, {', '.join(v for k, v in files.items() if k != 'json')}")


def add(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        parents=[DATA, DEVICE, INFER, JSON],
        help="evaluate a run's model on its test set or another dataset",
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--out", help="directory for eval.json and the figures of where the model fails (default: the run's)"
    )
    p.set_defaults(func=run, show=show)
