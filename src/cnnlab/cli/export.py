"""`cnnlab export RUN_DIR --format onnx|torchscript|pt2`: the run's model as a file, checked."""

from __future__ import annotations

import argparse
from typing import Any

from .common import JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..export import export_run

    return export_run(args.run_dir, args.format, args.out)


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    for c in r["checks"]:
        print(
            f"batch {c['batch']}: max abs diff {c['max_abs_diff']:.2e}, "
            f"max rel diff {c['max_rel_diff']:.2e} (tolerance {r['tolerance']:g})"
        )
    print(f"wrote {r['files']['model']} ({r['exporter']}) and {r['files']['metadata']}")


def add(sub: Any) -> None:
    from ..export import FORMATS

    p = sub.add_parser(
        "export",
        parents=[JSON],
        help="write a run's model as ONNX, TorchScript or torch.export (pt2), checked against PyTorch",
        description="Exports the run's model with BatchNorm folded, batch axis dynamic, loads the file "
        "back and compares its logits with PyTorch's at batch sizes 1 and 3. The classes, mean, std "
        "and input size go to FILE.json and into the file's own metadata.",
    )
    p.add_argument("run_dir")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="default onnx (needs cnnlab[export])")
    p.add_argument("--out", metavar="FILE", help="default RUN_DIR/model.onnx, .ts or .pt2")
    p.set_defaults(func=run, show=show)
