"""`cnnlab bench MODEL...`: images per second, GFLOP/s and utilization of training or inference steps."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from .common import DEVICE, JSON, wide_console


def _config(row: dict[str, Any]) -> str:
    """ "naive", "bf16 channels-last compiled", ...: what distinguishes the rows of a sweep."""
    if row["naive"]:
        return "naive"
    if row["backend"] != "torch":
        return f"{row['precision']} {row['backend']}"
    text = f"{row['precision']} {'channels-last' if row['channels_last'] else 'NCHW'}"
    if row["compile"]:
        text += " compiled"
    elif "compile_error" in row:
        text += " (compile failed: eager)"
    return text


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.summary import parse_input
    from ..bench import bench, check_models, sweep

    options: dict[str, Any] = {
        "mode": args.mode,
        "batch_size": args.batch_size,
        "input_size": parse_input(args.input) if args.input else None,
        "num_classes": args.num_classes,
        "steps": args.steps,
        "warmup": args.warmup,
        "min_seconds": args.min_seconds,
        "device": args.device,
    }
    if args.sweep:  # the grid sets precision, layout and naive itself
        rows = sweep(args.models, compile=args.compile, **options)
    else:
        check_models(args.models, options["input_size"], args.num_classes)  # all names, before any timing
        rows = [
            bench(
                name,
                precision=args.precision,
                channels_last=args.channels_last,
                compile=args.compile,
                naive=args.naive,
                backend=args.backend,
                **options,
            )
            for name in args.models
        ]
    return {"results": rows}


def show(result: dict[str, Any], args: argparse.Namespace) -> None:
    rows = result["results"]
    first = rows[0]
    console = wide_console()
    console.print(
        f"{first['mode']} steps, batch {first['batch_size']}, on {first['device']} with {first['threads']} "
        f"threads, torch {first['torch']}; median of at least {args.steps} timed steps after {args.warmup} "
        "warm-up",
        highlight=False,
    )
    table = Table()
    columns = ["model", "input", "config", "images/s", "ms/batch", "GFLOP/s", "peak GFLOP/s", "util"]
    columns += ["speed-up"] if args.sweep else []
    memory = any("gb_per_s" in row for row in rows)  # rows stepped by torch's own operations
    columns += ["GB/s (of copy)"] if memory else []
    columns += ["peak RSS MB"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "input", "config") else "right")
    for row in rows:
        cells = [
            row["model"],
            "x".join(map(str, row["input"])),
            _config(row),
            f"{row['images_per_s']:,.1f}",
            f"{row['ms_per_batch']:,.1f}",
            f"{row['gflops_per_s']:,.1f}",
            f"{row['peak_gflops_per_s']:,.0f}",
            f"{100 * row['utilization']:.1f}%",
        ]
        cells += [f"{row['speedup']:.2f}x"] if args.sweep else []
        if memory:
            cells += [
                f"{row['gb_per_s']:,.1f} ({100 * row['bandwidth_utilization']:.1f}%)"
                if "gb_per_s" in row
                else ""
            ]
        cells += [f"{row['peak_rss_mb']:,.0f}"]
        table.add_row(*cells)
    console.print(table)


def add(sub: Any) -> None:
    from ..bench import DEFAULT_BATCH_SIZE, DEFAULT_STEPS, DEFAULT_WARMUP, MIN_SECONDS, MODES, PRECISIONS
    from ..infer import BACKENDS

    p = sub.add_parser(
        "bench",
        parents=[DEVICE, JSON],
        help="time training or inference steps of models on synthetic data: images/s, GFLOP/s, utilization",
        description="Times steps on one synthetic batch (median after warm-up) and compares the achieved "
        "GFLOP/s with a probe of the machine's peak in the same precision (the best of large matrix "
        "products and convolutions). --sweep runs, per model, the naive "
        "baseline (eager, fp32, NCHW) and each precision in each memory layout. --json prints "
        '{"results": [one object per row]}.',
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--mode", choices=MODES, default="train", help="train (default) or infer")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--input", help="CxHxW, e.g. 3x224x224 (default: each model's usual input)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: what train runs (bf16 where the hardware has it), or for infer what eval runs (fp32)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory layout (default: whichever wins on this kind of device)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="--mode infer: the engine, as for `cnnlab eval` (default: the one eval would choose)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (falls back to eager)")
    p.add_argument("--naive", action="store_true", help="the baseline: eager, fp32, NCHW, no fusion")
    p.add_argument("--sweep", action="store_true", help="every precision and layout, plus the naive baseline")
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"timed steps, at least (default {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed steps first (default {DEFAULT_WARMUP})"
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        default=MIN_SECONDS,
        help=f"keep timing steps until this long has passed (default {MIN_SECONDS:g})",
    )
    p.set_defaults(func=run, show=show)
