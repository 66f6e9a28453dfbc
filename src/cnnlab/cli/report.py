"""`cnnlab report DIR...`: one self-contained HTML page with the runs and analyses found under DIRs."""

from __future__ import annotations

import argparse
import os
import sys
import webbrowser
from pathlib import Path
from typing import Any

from .common import JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..report import build_report

    r = build_report(args.dirs, out=args.out, title=args.title)
    if args.open:  # with --json too; the page is written, whatever is printed about it after
        open_in_browser(Path(r["out"]))
    return r


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    for run in r["runs"]:
        acc = run["test_acc"]
        top1 = f"top-1 {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "no accuracy"
        print(f"run {run['dir']}: {run['model']} on {run['dataset']}, {top1}")
    for a in r["analyses"]:
        problem = f" ({a['problem']})" if "problem" in a else ""
        print(f"analysis {a['name']} from {a['dir']}{problem}")
    for s in r["skipped"]:
        print(f"left out {s['path']}: {s['reason']}")
    images = f"{r['images']} image{'s' if r['images'] != 1 else ''}"
    print(f"wrote {r['out']} ({r['bytes'] / 1e6:.1f} MB, {images} embedded)")


def open_in_browser(path: Path) -> None:
    """Open ``path`` in the user's web browser, or say where it is when there is none."""
    uri = path.resolve().as_uri()  # a bare relative path is not understood by every browser
    # The browser inherits stdout and may chat on it ("Opening in existing browser session"): point it
    # at /dev/null, so that `--json` stays one JSON object.
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        opened = webbrowser.open(uri)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    if not opened:
        print(f"no web browser found; open {uri}", file=sys.stderr)


def add(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        parents=[JSON],
        help="one self-contained HTML page with the figures and tables of runs and analyses",
        description="Search each DIR at any depth for run directories (result.json and config.json) and "
        "analyses (NAME.json beside NAME.png), and write one HTML page that shows them all, images "
        "embedded: it can be mailed or opened offline.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="a run directory, an analysis --out, or above")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--title", help="the page's title (default: cnnlab report and the directory)")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.set_defaults(func=run, show=show)
