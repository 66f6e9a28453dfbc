"""The report's view of where runs fail, from the eval.json and figures `cnnlab eval` writes beside a run:
each run's confusion matrix, reliability diagram and most confidently wrong images, and the runs of one
dataset side by side."""

from __future__ import annotations

from html import escape
from typing import Any

from ..text import pct
from .find import Run
from .html import figure, table_html
from .tables import Table

CAPTIONS = {
    "confusion": "confusion matrix (rows: true class)",
    "calibration": "reliability diagram",
    "mistakes": "most confidently wrong test images",
}


def _worst_pair(f: dict[str, Any]) -> str:
    pairs = f.get("confused_pairs") or []
    return f"{pairs[0]['true']} as {pairs[0]['predicted']} ({pairs[0]['count']})" if pairs else "none"


def _weakest_class(f: dict[str, Any]) -> str:
    scores = f.get("per_class") or []
    if not scores:
        return "–"
    worst = min(scores, key=lambda s: s["f1"])
    return f"{worst['class']} (F1 {pct(worst['f1'])})"


def _summary(e: dict[str, Any]) -> str:
    f = e["failures"]
    return (
        f"On {e.get('dataset', '?')} ({e.get('images', '?')} test images, {e.get('backend', '?')}, "
        f"{e.get('precision', '?')}): top-1 {pct(e.get('test_acc'))}, macro F1 {pct(f.get('macro_f1'))}, "
        f"calibration error (ECE) {pct(f.get('calibration', {}).get('ece'))}; most confused: "
        f"{_worst_pair(f)}; weakest class: {_weakest_class(f)}."
    )


def runs_failures(runs: list[Run]) -> str:
    """A section with each evaluated run's numbers and three figures; '' when no run was evaluated."""
    evaluated = [(i, r) for i, r in enumerate(runs) if r.evaluation is not None]
    if not evaluated:
        return ""
    parts = [
        '<section id="failures"><h2>Where each run fails</h2>',
        '<p class="muted">From <span class="path">eval.json</span> and the figures <b>cnnlab eval</b> '
        "writes beside a run.</p>",
    ]
    for i, run in evaluated:
        e = run.evaluation or {}
        parts.append(
            f'<div id="failures-{i}"><h3>{escape(str(e.get("model", "?")))} '
            f'<span class="path">{escape(str(run.path))}</span></h3><p>{escape(_summary(e))}</p>'
            '<div class="trio">'
        )
        parts += [
            figure(run.figures.get(key), f"{run.path}: {key}", caption) for key, caption in CAPTIONS.items()
        ]
        parts.append("</div></div>")
    parts.append("</section>")
    return "".join(parts)


def side_by_side(runs: list[Run]) -> str:
    """For each dataset with two or more evaluated runs, their failure numbers in one table (a column per
    run) and their confusion matrices in one row; '' when there is no such dataset."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.evaluation is not None:
            groups.setdefault(str(run.evaluation.get("dataset")), []).append(run)
    groups = {ds: rs for ds, rs in groups.items() if len(rs) > 1}
    if not groups:
        return ""
    parts = ['<section id="compare-failures"><h2>Runs of the same data, side by side</h2>']
    for dataset, group in groups.items():
        evals = [r.evaluation or {} for r in group]
        header = ["", *(f"{e.get('model', '?')} ({r.path.name})" for e, r in zip(evals, group, strict=True))]
        rows = [
            ["top-1", *(pct(e.get("test_acc")) for e in evals)],
            ["macro F1", *(pct(e["failures"].get("macro_f1")) for e in evals)],
            [
                "calibration error (ECE)",
                *(pct(e["failures"].get("calibration", {}).get("ece")) for e in evals),
            ],
            ["most confused", *(_worst_pair(e["failures"]) for e in evals)],
            ["weakest class", *(_weakest_class(e["failures"]) for e in evals)],
        ]
        parts.append(f"<h3>{escape(dataset)}</h3>{table_html(Table(dataset, header, rows))}")
        figures = "".join(
            figure(
                r.figures.get("confusion"), f"{r.path}: confusion", f"{e.get('model', '?')}: {r.path.name}"
            )
            for e, r in zip(evals, group, strict=True)
        )
        parts.append(f'<div class="trio">{figures}</div>')
    parts.append("</section>")
    return "".join(parts)
