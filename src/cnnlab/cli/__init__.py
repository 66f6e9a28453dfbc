"""The command line: parse, call the library, print. Nothing else lives here but ``run``, the
``cnnlab`` command itself, which first sets up the process's allocator for training.

A user error (``CnnlabError``) prints one line on stderr and exits with status 2; ``--json`` prints
exactly one JSON object on stdout. Each verb lives in its own module (see common.py for their shape).
"""

from __future__ import annotations

import io
import os
import sys

from .. import runtime
from ..errors import CnnlabError
from ..text import one_line
from . import (
    analyze,
    bench,
    compare,
    convert,
    data,
    eval,
    experiment,
    export,
    models,
    predict,
    report,
    summary,
    train,
)
from .common import Parser, print_json

# In the order `cnnlab --help` lists them.
VERBS = (
    train, eval, predict, models, summary, analyze, report, compare, experiment, bench, export, convert, data
)  # fmt: skip


def build_parser() -> Parser:
    parser = Parser(prog="cnnlab", description="Image classification with convolutional networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for verb in VERBS:
        verb.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A file name that is not UTF-8 reaches Python as surrogates (PEP 383); echoed back (predict's
    # "IMAGE: label", export's "wrote FILE") it must come out as the user's bytes, whatever the locale.
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
        if result is not None:  # None: the verb printed as it went (train's progress)
            if getattr(args, "json", False):
                print_json(result)
            else:
                args.show(result, args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
    except BrokenPipeError:
        # `cnnlab summary resnet152 --json | head`: the reader has what it wanted. Quiet, status 1 as rich's
        # tables exit on a closed pipe; stdout goes to /dev/null, or Python's last flush would complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CnnlabError as e:
        print(f"cnnlab {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def run(argv: list[str] | None = None) -> int:
    """The ``cnnlab`` command: ``main`` in a process of its own, whose malloc it may set up for training
    (``runtime.keep_freed_memory``); ``main`` called from other code leaves the process's malloc alone."""
    runtime.keep_freed_memory()
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
