"""What every command shares: the one-line-error parser, the shared options and the ways of printing.

The shape of a verb module (`cli/NAME.py`):

    def add(sub) -> None:           # registers the parser, with parents=[JSON, ...] for shared options
        p = sub.add_parser("NAME", parents=[JSON, ...], ...)
        p.set_defaults(func=run, show=show)

    def run(args) -> dict | None:   # calls the library and returns its result
    def show(result, args) -> None: # prints the result for people

`main` prints the result as one JSON object when ``--json`` is given, and calls ``show`` otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from ..infer import BACKENDS, DEFAULT_PRECISION
from ..infer import PRECISIONS as INFER_PRECISIONS
from ..runtime import DEVICES
from ..text import one_line


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage plus message
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _parent(*add: Any) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    for a in add:
        a(parent)
    return parent


def seed_int(text: str) -> int:
    """An int that torch.manual_seed takes: Python's ints have no bound, a 64-bit seed has."""
    try:
        value = int(text)
    except ValueError:  # argparse's own words for a bad int
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not -(2**63) <= value < 2**64:
        raise argparse.ArgumentTypeError("a seed is an integer from -2**63 to 2**64 - 1")
    return value


JSON = _parent(lambda p: p.add_argument("--json", action="store_true", help="print one JSON object"))


def _seed(p: argparse.ArgumentParser, default: Any = 0) -> None:
    p.add_argument("--seed", type=seed_int, default=default)


def _data(p: argparse.ArgumentParser, default: Any = None) -> None:
    p.add_argument(
        "--data",
        default=default,
        help="mnist5k, cifar10, cifar100, mnist, fashion_mnist, or a path (image folder, CIFAR, IDX); "
        "default: a run's own dataset, else mnist5k",
    )
    p.add_argument(
        "--data-root",
        default=default,
        help="where named datasets live or are downloaded (default ./data or $CNNLAB_DATA)",
    )


def _device(p: argparse.ArgumentParser, default: Any = "auto") -> None:
    p.add_argument("--device", choices=DEVICES, default=default)


SEED = _parent(_seed)
# No default for --data: "not given" means the run's own dataset for a run, and mnist5k otherwise. A verb
# with another default resolves None itself, since set_defaults would rewrite the action all verbs share.
DATA = _parent(_data)
DEVICE = _parent(_device)
# `train`'s own copies leave an option that is not given out of the parsed arguments, as all its
# options do: a --config file sets what the flags leave.
TRAIN_SHARED = _parent(*(lambda p, add=add: add(p, argparse.SUPPRESS) for add in (_data, _seed, _device)))
# The engine that runs a trained model, and in which precision: see cnnlab.infer.
INFER = _parent(
    lambda p: p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="the inference engine (default: the fastest installed on this device; "
        "onnxruntime and openvino come with pip install 'cnnlab[infer]')",
    ),
    lambda p: p.add_argument(
        "--precision",
        choices=INFER_PRECISIONS,
        default=DEFAULT_PRECISION,
        help="bf16 runs about twice as fast on a CPU with native bf16, at some cost in accuracy "
        "(default fp32)",
    ),
)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def wide_console() -> Console:
    """A console for wide tables: off a terminal rich assumes 80 columns and would cut layer names."""
    console = Console()
    return console if console.is_terminal else Console(width=150)


def print_files(console: Console, result: dict[str, Any]) -> None:
    console.print(f"wrote {result['files']['json']} and {result['files']['png']}", highlight=False)
