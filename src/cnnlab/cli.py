"""The command line: parse, call the library, print. Nothing else lives here.

A user error (``CnnlabError``) prints one line on stderr and exits with status 2; ``--json`` prints
exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import re
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from .errors import CnnlabError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage plus message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


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
    from .train import TrainConfig, fit

    # Every flag of `train` is named after the TrainConfig field it sets.
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(
        **{k: v for k, v in vars(args).items() if k in fields},
        download=not args.no_download,
        model_kwargs=parse_model_args(args.model_arg),
    )
    fit(config, live=False if args.no_progress else None)


def cmd_eval(args: argparse.Namespace) -> None:
    from .predict import evaluate_run

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
    from .predict import predict_files

    results = predict_files(args.run_dir, args.images, topk=args.topk, device=args.device)
    if args.json:
        print_json({"predictions": results})
        return
    for r in results:
        guesses = ", ".join(f"{p['label']} {100 * p['prob']:.1f}%" for p in r["top"])
        print(f"{r['image']}: {guesses}")


def cmd_models(args: argparse.Namespace) -> None:
    from .models import describe_models

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


def _wide_console() -> Console:
    """A console for wide tables: off a terminal rich assumes 80 columns and would cut layer names."""
    console = Console()
    return console if console.is_terminal else Console(width=150)


def _si(n: int | float) -> str:
    """1_814_073_344 -> "1.81G"."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def cmd_summary(args: argparse.Namespace) -> None:
    from .analysis.summary import parse_input, summarize

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


def _print_files(console: Console, result: dict[str, Any]) -> None:
    console.print(f"wrote {result['files']['json']} and {result['files']['png']}", highlight=False)


def cmd_analyze_rf(args: argparse.Namespace) -> None:
    from .analysis.analyze import analyze_rf
    from .analysis.summary import parse_input

    r = analyze_rf(
        args.model,
        parse_input(args.input) if args.input else None,
        data=args.data,
        images=args.images,
        out_dir=args.out,
        seed=args.seed,
    )
    if args.json:
        print_json(r)
        return
    console = _wide_console()
    e = r["effective"]
    console.print(
        f"{r['model']} at {'x'.join(map(str, r['input']))} ({r['weights']}): theoretical receptive field "
        f"{r['receptive_field']}x{r['receptive_field']} px, stride {r['stride']}, of the last "
        f"{r['feature_map'][0]}x{r['feature_map'][1]} feature map; effective: half of the gradient "
        f"mass of its centre unit lies within {e['half_mass_side']}x{e['half_mass_side']} px "
        f"({e['count']} {e['images']} images)",
        highlight=False,
    )
    table = Table(title=f"VGG's argument, C = {r['vgg']['channels']} channels")
    for col in ("stack", "weights", "per C²", "receptive field"):
        table.add_column(col, justify="left" if col == "stack" else "right")
    for row in r["vgg"]["stacks"]:
        table.add_row(
            row["stack"], f"{row['weights']:,}", f"{row['weights_per_c2']:g}C²", str(row["receptive_field"])
        )
    console.print(table)
    _print_files(console, r)


def cmd_analyze_inception(args: argparse.Namespace) -> None:
    from .analysis.analyze import analyze_inception

    r = analyze_inception(out_dir=args.out, image_size=args.image_size)
    if args.json:
        print_json(r)
        return
    k = r["five_kernel"]
    table = Table(
        title=f"GoogLeNet at {r['image_size']}x{r['image_size']}: Inception modules with and without "
        f'1x1 reductions ("5x5" branch counted as {k}x{k}, as built)'
    )
    for col in ("module", "input", "MACs", "MACs without", "ratio", "params", "params without", "ratio "):
        table.add_column(col, justify="left" if col == "module" else "right")
    for m in r["modules"]:
        table.add_row(
            m["module"],
            "x".join(map(str, m["input"])),
            _si(m["macs"]),
            _si(m["macs_without"]),
            f"{m['macs_ratio']:.2f}",
            f"{m['params']:,}",
            f"{m['params_without']:,}",
            f"{m['params_ratio']:.2f}",
        )
    console = _wide_console()
    console.print(table)
    console.print(
        f"all nine: {_si(r['macs'])} MACs with the reductions, {_si(r['macs_without'])} without "
        f"(x{r['macs_ratio']:.2f})",
        highlight=False,
    )
    _print_files(console, r)


def cmd_analyze_scaling(args: argparse.Namespace) -> None:
    from .analysis.analyze import analyze_scaling

    r = analyze_scaling(out_dir=args.out, max_phi=args.max_phi)
    if args.json:
        print_json(r)
        return
    table = Table(
        title=f"EfficientNet compound scaling: alpha={r['alpha']:g} (depth), beta={r['beta']:g} (width), "
        f"gamma={r['gamma']:g} (resolution)"
    )
    for col in (
        "phi",
        "depth",
        "width",
        "res",
        "released d/w/res",
        "blocks",
        "params",
        "MACs",
        "vs B0",
        "2^phi",
    ):
        table.add_column(col, justify="right")
    for row in r["rows"]:
        table.add_row(
            str(row["phi"]),
            f"{row['depth_mult']:.3f}",
            f"{row['width_mult']:.3f}",
            f"{row['resolution_mult']:.3f} ({row['resolution_eq3']:.0f})",
            f"{row['released_depth']:g}/{row['released_width']:g}/{row['released_resolution']}",
            str(row["blocks"]),
            f"{row['params']:,}",
            _si(row["macs"]),
            f"{row['macs_vs_b0']:.2f}",
            f"{2 ** row['phi']}",
        )
    console = _wide_console()
    console.print(table)
    _print_files(console, r)


def build_parser() -> Parser:
    from .analysis.analyze import DEFAULT_OUT
    from .train.loop import TrainConfig
    from .train.runtime import DEVICES, PRECISIONS
    from .train.schedule import SCHEDULES

    d = TrainConfig()
    parser = Parser(prog="cnnlab", description="Image classification with convolutional networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a model; with no arguments, ResNet-20 on the embedded mnist5k digits.",
    )
    p.add_argument(
        "--model", default=d.model, help=f"a registered model (default {d.model}; see `cnnlab models`)"
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
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1 x batch size / 128)")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--padding", type=int, help="random-crop padding in pixels (default: an eighth of the side)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--device", choices=DEVICES, default=d.device)
    p.add_argument("--no-progress", action="store_true", help="plain lines even on a terminal")
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

    p = sub.add_parser(
        "analyze",
        help="receptive fields, Inception's reductions, EfficientNet's scaling: numbers and figures",
        description="Each analysis writes NAME.json (the numbers) and NAME.png (the figure) into --out.",
    )
    analyses = p.add_subparsers(dest="analysis", required=True, parser_class=Parser, metavar="ANALYSIS")
    out_help = f"directory for the .json and .png (default ./{DEFAULT_OUT})"

    a = analyses.add_parser(
        "rf",
        help="theoretical receptive field per layer, effective receptive field heat map, VGG's 3x3 argument",
        description="Receptive fields of a registered model (freshly initialized) or of a run directory's "
        "trained model; writes rf.json and rf.png.",
    )
    a.add_argument("model", help="a registered model or a run directory")
    a.add_argument("--input", help="CxHxW (default: the model's usual input, or the run's)")
    a.add_argument(
        "--data", help="images for the effective RF: a dataset name or path (default: noise; a run's data)"
    )
    a.add_argument("--images", type=int, default=8, help="how many images to average over (default 8)")
    a.add_argument("--seed", type=int, default=0, help="initialization seed of a fresh model")
    a.add_argument("--out", default=DEFAULT_OUT, help=out_help)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_analyze_rf)

    a = analyses.add_parser(
        "inception",
        help="MACs and parameters of GoogLeNet's Inception modules with and without 1x1 reductions",
        description="Writes inception.json and inception.png.",
    )
    a.add_argument("--image-size", type=int, default=224, help="GoogLeNet's input side (default 224)")
    a.add_argument("--out", default=DEFAULT_OUT, help=out_help)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_analyze_inception)

    a = analyses.add_parser(
        "scaling",
        help="EfficientNet's compound scaling for phi = 0..7 against the released B0-B7",
        description="Writes scaling.json and scaling.png.",
    )
    a.add_argument("--max-phi", type=int, default=7, help="the last phi (default 7: B0-B7)")
    a.add_argument("--out", default=DEFAULT_OUT, help=out_help)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_analyze_scaling)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CnnlabError as e:
        print(f"cnnlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
