"""`cnnlab report`: one self-contained HTML page with the figures and tables of runs and analyses.

Each directory is searched at any depth for

* run directories (``result.json`` beside ``config.json``, as ``cnnlab train`` writes them): one row
  each in a table of runs, and their ``curves.png``; where ``cnnlab eval`` has written ``eval.json``
  beside them, where each run fails (confusion matrix, reliability diagram, most confidently wrong
  images), and the runs of one dataset side by side;
* analysis outputs (``NAME.json`` beside ``NAME.png``, as ``cnnlab analyze`` writes them, and anything
  else that follows that convention): the figure and the JSON's numbers as tables.

Nothing depends on an analysis's name: the tables are read off the shape of its JSON (scalars, short
lists, lists of records, tables of tables). The page has inline CSS, no script, and every image
embedded as a base64 data URI, so the one file can be mailed, uploaded or opened offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ..rundir import atomic_write
from .find import find
from .page import render

__all__ = ["build_report"]


def build_report(
    dirs: list[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str] = "report.html",
    title: str | None = None,
) -> dict[str, Any]:
    """Write one self-contained HTML page about the runs and analyses under ``dirs``.

    Returns what it holds: ``out`` (the path written), ``title``, ``runs`` (their directories and
    accuracies), ``analyses`` (name and directory), ``skipped`` (what could not be read, and why),
    ``images`` (how many PNGs are embedded) and ``bytes``.
    """
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    sources = [str(d) for d in dirs]
    found = find(list(dirs))
    if title is None:
        title = f"cnnlab report: {sources[0]}" if len(sources) == 1 else "cnnlab report"
    page = render(found, title, sources).encode()
    out = Path(out)
    if out.is_dir():
        raise CnnlabError(f"{out} is a directory; give --out a file name, e.g. {out / 'report.html'}")
    try:
        atomic_write(out, page)  # creates the parent; a reader never sees half a page
    except OSError as e:
        raise CnnlabError(f"cannot write {out}: {e.strerror or e}") from None
    return {
        "out": str(out),
        "title": title,
        "runs": [
            {
                "dir": str(r.path),
                "model": r.result.get("model"),
                "dataset": r.result.get("dataset"),
                "test_acc": r.result.get("test_acc"),
            }
            for r in found.runs
        ],
        "analyses": [
            {"name": a.name, "dir": str(a.path), **({"problem": a.problem} if a.problem else {})}
            for a in found.analyses
        ],
        "skipped": found.skipped,
        "images": sum(r.curves is not None for r in found.runs)
        + sum(png is not None for r in found.runs for png in r.figures.values())
        + sum(a.png is not None for a in found.analyses),
        "bytes": len(page),
    }
