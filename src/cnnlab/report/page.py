"""The HTML of `cnnlab report`'s page: the inline CSS, the table of runs with their training curves,
one section per analysis (its sentence from `ABOUT`, figure, tiles and tables), and `render`, which
puts them together into one self-contained page with no script and every image a base64 data URI.
"""

from __future__ import annotations

import datetime
from html import escape
from typing import Any

from ..text import pct
from .failures import runs_failures, side_by_side
from .find import Analysis, Found, Run
from .html import figure, table_html
from .tables import Table, numbers

FOLD = 12  # tables longer than this are folded away behind a click

# A sentence for the analyses that cnnlab ships; any other NAME.json + NAME.png is shown without one.
ABOUT = {
    "rf": "Theoretical receptive field and stride per layer, the effective receptive field of the last "
    "feature map's centre unit, and VGG's argument for stacks of 3x3 convolutions.",
    "inception": "MACs and parameters of GoogLeNet's Inception modules with and without their 1x1 "
    "reductions.",
    "scaling": "EfficientNet's compound scaling, depth x width x resolution for phi = 0..7, against the "
    "released B0-B7.",
    "templates": "The class templates of a trained linear classifier beside the mean image of each class.",
    "knn": "k-nearest-neighbour accuracy against k, and query time against the number of stored images.",
    "se": "The excitations of a trained squeeze-and-excitation model, per block, channel and class.",
    "paths": "A residual network as an ensemble of paths (Veit et al. 2016): the distribution of path "
    "lengths, the lesion study and the gradient per path length.",
    "compare": "Models side by side: parameters, MACs, receptive field and measured images/s, with "
    "accuracy against MACs when trained.",
    "offsets": "The sampling locations of a deformable model's convolutions over an image (Dai et al. 2017).",
}

CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --soft: #f6f8fa; --accent: #0b63c5; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 64px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 8px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line);
  display: flex; justify-content: space-between; align-items: baseline; gap: 16px; flex-wrap: wrap; }
h2 .path { font-weight: 400; }
.muted, .path { color: var(--muted); }
.path { font: 12.5px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
nav { font-size: 14px; margin: 10px 0 0; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
.scroll { overflow-x: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.num, th.num { text-align: right; white-space: nowrap; }
table.data { font-size: 13.5px; }
table.data th, table.data td { padding: 4px 9px; }
table.data th { white-space: normal; vertical-align: bottom; }
table.data td { white-space: nowrap; }
table.runs { width: 100%; }
table.runs td.best { font-weight: 700; color: #116329; }
table.runs .sub { font-size: 12px; color: var(--muted); }
table.runs a { color: var(--accent); text-decoration: none; }
table.runs a:hover { text-decoration: underline; }
.bar { height: 4px; background: #e6ebf1; border-radius: 2px; margin-top: 3px; min-width: 60px; }
.bar span { display: block; height: 100%; background: #2da44e; border-radius: 2px; }
dl.kv { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 8px;
  margin: 12px 0; }
dl.kv div { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 5px 10px; }
dl.kv div.wide { grid-column: span 2; }
dl.kv dt { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
dl.kv dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.caption { font-size: 13px; font-weight: 600; color: var(--muted); margin: 10px 0 -4px; }
.tables { display: flex; flex-wrap: wrap; gap: 0 36px; align-items: flex-start; }
.tables > div { min-width: 0; max-width: 100%; }
figure { margin: 12px 0; }
figure img { display: block; max-width: 100%; height: auto; max-height: 90vh; width: auto; margin: 0 auto;
  border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; text-align: center; }
.curves { display: grid; grid-template-columns: repeat(auto-fit, minmax(500px, 1fr)); gap: 18px; }
.curves figure { margin: 0; }
.trio { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 14px;
  align-items: start; }
.trio figure { margin: 0; }
h3 { font-size: 17px; margin: 24px 0 4px; }
section.analysis { margin: 0 0 36px; }
section.analysis .about { margin: 2px 0 6px; }
.numbers { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); font-size: 14px; }
.note { font-size: 13px; color: var(--muted); margin: 4px 0; }
.warn { color: #9a6700; }
.verdict { font-weight: 600; margin: 6px 0; }
.yes { color: #1a7f37; } .no { color: #cf222e; } .unsure { color: #9a6700; }
footer { margin-top: 48px; font-size: 13px; color: var(--muted); border-top: 1px solid var(--line);
  padding-top: 8px; }
@media (max-width: 640px) {
  main { padding: 16px 12px 40px; }
  .curves { grid-template-columns: 1fr; }
  th, td { padding: 4px 6px; }
}
@media print { figure, table { break-inside: avoid; } details > *:not(summary) { display: block; } }
"""


def _duration(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "–"
    if s < 59.95:
        return f"{s:.1f} s"
    # Rounded before splitting, so that 119.7 s is "2 min 00 s" and not "1 min 60 s".
    if s < 3570:
        return f"{round(s) // 60} min {round(s) % 60:02d} s"
    return f"{round(s / 60) // 60} h {round(s / 60) % 60:02d} min"


def _count(v: Any) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "–"


RUN_COLUMNS = (
    "model",
    "dataset",
    "epochs",
    "top-1",
    "top-5",
    "params",
    "train time",
    "images/s",
    "run directory",
)
TEXT_COLUMNS = ("model", "dataset", "run directory")  # the others are numbers, right-aligned
NUM = ' class="num"'


def _runs_section(runs: list[Run]) -> str:
    # The best top-1 on each dataset with more than one run is marked: the table is read to compare.
    accs: dict[str, list[float]] = {}
    for run in runs:
        acc = run.result.get("test_acc")
        if isinstance(acc, (int, float)):
            accs.setdefault(str(run.result.get("dataset")), []).append(acc)
    best = {ds: max(a) for ds, a in accs.items() if len(a) > 1}
    rows = []
    for i, run in enumerate(runs):
        r = run.result
        acc, ds = r.get("test_acc"), str(r.get("dataset"))
        is_best = acc is not None and acc == best.get(ds)
        bar = (
            f'<div class="bar"><span style="width:{max(0.0, min(100.0, 100 * acc)):.1f}%"></span></div>'
            if isinstance(acc, (int, float))
            else ""
        )
        details = " · ".join(str(r[k]) for k in ("device", "precision") if r.get(k))
        if isinstance(r.get("seed"), int):
            details += f" · seed {r['seed']}"
        rows.append(
            "<tr>"
            f'<td><a href="#run-{i}"><b>{escape(str(r.get("model", "?")))}</b></a>'
            f'<div class="sub">{escape(details)}</div></td>'
            f"<td>{escape(ds)}</td>"
            f'<td class="num">{escape(_count(r.get("epochs")))}</td>'
            f'<td class="num{" best" if is_best else ""}">{escape(pct(acc))}{bar}</td>'
            f'<td class="num">{escape(pct(r.get("test_top5")))}</td>'
            f'<td class="num">{escape(_count(r.get("params")))}</td>'
            f'<td class="num">{escape(_duration(r.get("train_time_s")))}</td>'
            f'<td class="num">{escape(_count(r.get("images_per_s")))}</td>'
            f'<td class="path">{escape(str(run.path))}</td>'
            "</tr>"
        )
    header = "".join(f"<th{'' if h in TEXT_COLUMNS else NUM}>{h}</th>" for h in RUN_COLUMNS)
    figures = []
    for i, run in enumerate(runs):
        r = run.result
        caption = f"{r.get('model', '?')} on {r.get('dataset', '?')}: top-1 {pct(r.get('test_acc'))}"
        figures.append(
            f'<div id="run-{i}">{figure(run.curves, f"{run.path}: curves.png", caption, run.path)}</div>'
        )
    plural = "s" if len(runs) != 1 else ""
    return (
        f'<section id="runs"><h2>Runs</h2>'
        f'<p class="muted">{len(runs)} training run{plural}; top-1 and top-5 are test accuracies after the '
        "last epoch, images/s is the training throughput.</p>"
        f'<div class="scroll"><table class="runs"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        f'<h2 id="curves">Training curves</h2><div class="curves">{"".join(figures)}</div></section>'
    )


WIDE = ' class="wide"'  # a tile two columns wide, for a long value


def _analysis_section(i: int, a: Analysis) -> str:
    parts = [
        f'<section class="analysis" id="analysis-{i}">',
        f'<h2><span>{escape(a.name)}</span><span class="path">{escape(str(a.path / a.name))}.json</span>',
        "</h2>",
    ]
    experiment = _is_experiment(a.data)
    if experiment:
        parts.append(f'<p class="about">Claim: {escape(a.data["claim"])}</p>')
    elif a.name in ABOUT:
        parts.append(f'<p class="about">{escape(ABOUT[a.name])}</p>')
    parts.append(figure(a.png, f"{a.name} figure"))
    if a.problem:
        parts.append(f'<p class="note warn">{escape(a.problem)}</p>')
    if experiment:
        parts.append(_experiment_html(a.data))
    elif a.data is not None:
        n = numbers(a.data)
        if n.scalars:
            # Tiles rather than a two-column table: a dozen numbers take two lines, not a screen.
            tiles = "".join(
                f"<div{WIDE if len(v) > 36 else ''}><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>"
                for k, v in n.scalars
            )
            parts.append(f'<dl class="kv">{tiles}</dl>')
        # Short tables side by side when they fit; long ones folded, so that the page stays a quick read.
        shown = [t for t in n.tables if len(t.rows) <= FOLD]
        if shown:
            blocks = "".join(
                f'<div><div class="caption">{escape(t.caption)}</div>{table_html(t)}</div>' for t in shown
            )
            parts.append(f'<div class="tables">{blocks}</div>')
        parts += [
            f"<details><summary>{escape(t.caption)}: a table of {len(t.rows)} rows</summary>"
            f"{table_html(t)}</details>"
            for t in n.tables
            if len(t.rows) > FOLD
        ]
        if n.left_out:
            left_out = escape(", ".join(n.left_out))
            parts.append(f'<p class="note">Also in {escape(a.name)}.json, not shown: {left_out}.</p>')
    parts.append("</section>")
    return "".join(parts)


def _is_experiment(data: Any) -> bool:
    """The JSON of `cnnlab experiment`: a claim, its findings and a table of arms."""
    return isinstance(data, dict) and all(
        k in data for k in ("claim", "verdict", "findings", "columns", "arms")
    )


def _experiment_html(data: dict[str, Any]) -> str:
    """An experiment's verdict, each finding with its evidence, and its table of arms."""
    from ..experiments.claims import cell, sentence

    verdict = data["verdict"]
    parts = [f'<p class="verdict {_verdict_class(verdict)}">Verdict: {escape(sentence(verdict))}</p><ul>']
    parts += [
        f'<li><b class="{_verdict_class(f["verdict"])}">{escape(f["verdict"])}</b>: {escape(f["claim"])} '
        f'<span class="note">({escape(f["evidence"])})</span></li>'
        for f in data["findings"]
    ]
    parts.append("</ul>")
    columns = data["columns"]
    rows = [[cell(row.get(key), kind) for key, _, kind in columns] for row in data["arms"]]
    setup = data.get("setup", {})
    caption = f"on {setup.get('data', '?')}, seeds {', '.join(map(str, setup.get('seeds', [])))}: mean ± std"
    parts.append(f'<div class="caption">{escape(caption)}</div>')
    parts.append(table_html(Table(caption, [label for _, label, _ in columns], rows)))
    return "".join(parts)


def _verdict_class(verdict: str) -> str:
    return {"supports": "yes", "contradicts": "no"}.get(verdict, "unsure")


def render(found: Found, title: str, sources: list[str]) -> str:
    """The whole page as a string."""
    from .. import __version__

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    counts = []
    if found.runs:
        counts.append(f"{len(found.runs)} run{'s' if len(found.runs) != 1 else ''}")
    if found.analyses:
        counts.append(f"{len(found.analyses)} analys{'e' if len(found.analyses) != 1 else 'i'}s")
    nav = []
    if found.runs:
        nav += ['<a href="#runs">Runs</a>', '<a href="#curves">Training curves</a>']
        if any(r.evaluation is not None for r in found.runs):
            nav.append('<a href="#failures">Where runs fail</a>')
    nav += [f'<a href="#analysis-{i}">{escape(a.name)}</a>' for i, a in enumerate(found.analyses)]
    body = [
        "<header>",
        f"<h1>{escape(title)}</h1>",
        f'<div class="muted">{escape(now)} · {escape(" and ".join(counts))} from '
        f'<span class="path">{escape(", ".join(sources))}</span></div>',
        f"<nav>{''.join(nav)}</nav>",
        "</header>",
    ]
    if found.skipped:
        items = "".join(f"<li>{escape(s['path'])}: {escape(s['reason'])}</li>" for s in found.skipped)
        body.append(f'<div class="note warn">Left out, unreadable:<ul>{items}</ul></div>')
    if found.runs:
        body += [_runs_section(found.runs), runs_failures(found.runs), side_by_side(found.runs)]
    body += [_analysis_section(i, a) for i, a in enumerate(found.analyses)]
    body.append(f"<footer>Written by <b>cnnlab report</b> {escape(__version__)}.</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{chr(10).join(body)}\n</main>\n</body>\n</html>\n"
    )
