"""The command line: parse, call the library, print. Nothing else lives here.

A user error (``CnnlabError``) prints one line on stderr and exits with status 2; ``--json`` prints
exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import CnnlabError
from . import analyze, bench, compare, convert, experiment, export, report
from .common import Parser, _si, _wide_console, print_json


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["k=5", "metric=cosine"]`` -> ``{"k": 5, "metric": "cosine"}``: numbers, booleans and None
    are read as Python literals, anything else stays a string."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise CnnlabError(f"--model-arg takes KEY=VALUE, e.g. --model-arg k=5; got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


def cmd_train(args: argparse.Namespace) -> None:
    from ..train import TrainConfig, fit, resume

    if args.resume and args.init:
        raise CnnlabError("--init starts a new run and --resume continues one: give one of them, not both")
    if args.resume:
        resume(args.resume, live=False if args.no_progress else None)
        return

    # Every flag of `train` is named after the TrainConfig field it sets.
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(
        **{k: v for k, v in vars(args).items() if k in fields},
        download=not args.no_download,
        model_kwargs=parse_model_args(args.model_arg),
    )
    fit(config, live=False if args.no_progress else None)


def cmd_eval(args: argparse.Namespace) -> None:
    from ..predict import evaluate_run

    result = evaluate_run(args.run_dir, data=args.data, data_root=args.data_root, device=args.device)
    if args.json:
        print_json(result)
    else:
        print(
            f"{result['model']} on {result['dataset']} ({result['images']} test images): "
            f"top-1 {100 * result['test_acc']:.2f}%  top-5 {100 * result['test_top5']:.2f}%  "
            f"loss {result['test_loss']:.4f}"
        )


def cmd_predict(args: argparse.Namespace) -> None:
    from ..predict import predict_files

    results = predict_files(args.run_dir, args.images, topk=args.topk, device=args.device)
    if args.json:
        print_json({"predictions": results})
        return
    for r in results:
        guesses = ", ".join(f"{p['label']} {100 * p['prob']:.1f}%" for p in r["top"])
        print(f"{r['image']}: {guesses}")


def cmd_models(args: argparse.Namespace) -> None:
    from ..models import describe_models

    rows = describe_models(args.pattern)
    if not rows:
        raise CnnlabError(f"no model matches {args.pattern!r}; see `cnnlab models`")
    if args.json:
        print_json({"models": rows})
        return
    console = Console()
    if len(rows) == 1:  # one model: the whole paragraph
        r = rows[0]
        console.print(
            f"[bold]{r['name']}[/bold] ({r['family']}): {r['params']:,} parameters for 1000 classes; "
            f"input {'x'.join(map(str, r['default_input_size']))}, at least "
            f"{r['min_input_size']}x{r['min_input_size']}\n{r['description']}",
            highlight=False,
        )
        return
    table = Table(title=f"{len(rows)} models (parameters for 1000 classes, 3 channels)")
    for col, justify in (
        ("name", "left"),
        ("family", "left"),
        ("params", "right"),
        ("min input", "right"),
        ("description", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        first_sentence = re.split(r"(?<!et al)\.\s", r["description"], maxsplit=1)[0].rstrip(".") + "."
        table.add_row(
            r["name"],
            r["family"],
            f"{r['params']:,}",
            f"{r['min_input_size']}x{r['min_input_size']}",
            first_sentence,
        )
    console.print(table)
    console.print("`cnnlab models NAME` prints one model's description in full.")


def cmd_summary(args: argparse.Namespace) -> None:
    from ..analysis.summary import parse_input, summarize

    s = summarize(args.model, parse_input(args.input) if args.input else None, num_classes=args.num_classes)
    if args.json:
        print_json(s)
        return
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
            _si(layer["macs"]) if layer["macs"] else "",
            "" if rf is None else str(rf),
            "" if layer["stride"] is None else str(layer["stride"]),
        )
    console = _wide_console()
    console.print(table)
    console.print(
        f"parameters: {s['params']:,} (trainable {s['trainable_params']:,}); "
        f"MACs: {s['macs']:,} ({_si(s['macs'])}); "
        f"receptive field: {s['receptive_field']}x{s['receptive_field']} px at stride {s['stride']}; "
        f"output {'x'.join(map(str, s['output_shape']))}; "
        f"minimum input {s['min_input_size']}x{s['min_input_size']}",
        highlight=False,
    )


def build_parser() -> Parser:
    from ..runtime import DEVICES, PRECISIONS
    from ..train.loop import DEFAULT_MODEL, TrainConfig
    from ..train.schedule import SCHEDULES

    d = TrainConfig()
    parser = Parser(prog="cnnlab", description="Image classification with convolutional networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a model; with no arguments, ResNet-20 on the embedded mnist5k digits.",
    )
    p.add_argument(  # default None: with --init, "not given" means the init run's model
        "--model",
        help=f"a registered model (default {DEFAULT_MODEL}, or the --init run's; see `cnnlab models`)",
    )
    p.add_argument(
        "--data",
        default=d.data,
        help="mnist5k, cifar10, cifar100, mnist, fashion_mnist, or a path (image folder, CIFAR, IDX)",
    )
    p.add_argument(
        "--data-root", help="where named datasets live or are downloaded (default ./data or $CNNLAB_DATA)"
    )
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is missing")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on an unreadable image in an image folder instead of skipping it",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the model's builder, e.g. k=5 or metric=cosine for knn (repeatable)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help="resize every image to this side (e.g. 64 for models that need more than 28x28)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1 x batch size / 128)")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument(
        "--label-smoothing", type=float, default=d.label_smoothing, help=f"default {d.label_smoothing}"
    )
    p.add_argument(
        "--padding", type=int, help="random-crop padding in pixels (default: an eighth of the side)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--device", choices=DEVICES, default=d.device)
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory layout (default: where it is faster, on CPU and CUDA)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun: BatchNorm statistics of the global batch, as one process computes them",
    )
    p.add_argument(
        "--init",
        metavar="RUN_DIR",
        help="start from the weights of RUN_DIR (a trained or converted run); layers whose shape depends "
        "on the number of classes get a new initialisation",
    )
    p.add_argument("--no-progress", action="store_true", help="plain lines even on a terminal")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint, with its own settings",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's model on its test set or another dataset")
    p.add_argument("run_dir")
    p.add_argument("--data", help="dataset name or path (default: the one it was trained on)")
    p.add_argument("--data-root")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify image files with a run's model")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", help="a shell pattern, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="parameters, output shape and a per-layer table of a model")
    p.add_argument("model")
    p.add_argument("--input", help="CxHxW, e.g. 3x224x224 (default: the model's usual input)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_summary)

    for verb in (analyze, report, compare, experiment, bench, export, convert):
        verb.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
        if result is not None:  # a verb in the shape of common.py's docstring
            if getattr(args, "json", False):
                print_json(result)
            else:
                args.show(result, args)
    except CnnlabError as e:
        print(f"cnnlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
