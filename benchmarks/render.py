"""Render docs/results.md from the recorded JSON: every measured number on that page comes from a file;
and docs/papers.md from the papers' recipes registered beside the models.

Run as ``python benchmarks/render.py`` (``make results``) to write both pages, or with ``--check`` to exit
with status 1 when a page differs from its render. results.md needs the standard library only;
papers.md imports cnnlab, from this checkout's ``src``. The inputs are every
``benchmarks/results/*.json`` (recognized by their shape: ``cnnlab bench --json``, ``deform_conv.py``,
``channels_last.py --json``, ``time_to_accuracy.py``) and every ``docs/figures/NAME.json`` an analysis
wrote. A file of a shape this module does not know is an error, so a new kind of result gets its table
rather than being left off the page.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks/results")
FIGURES = Path("docs/figures")
PAGE = Path("docs/results.md")
PAPERS_PAGE = Path("docs/papers.md")

Json = dict[str, Any]


# --- formatting -------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells are already text or plain values."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def count(n: float) -> str:
    """Large integers (parameters, MACs) with thousands separators; the exact value, not a rounding."""
    return f"{int(n):,}"


def load(root: Path, rel: Path) -> Json:
    return json.loads((root / rel).read_text(encoding="utf-8"))


# --- benchmarks/results ------------------------------------------------------------------------------


def machine_of(data: Json) -> Json | None:
    """A file's machine record: at its top, or in its rows (``cnnlab bench --json`` puts one in each)."""
    if "machine" in data:
        return data["machine"]
    rows = data.get("results")
    if isinstance(rows, list) and rows and "machine" in rows[0]:
        return rows[0]["machine"]
    return None


def machines(files: dict[str, Json]) -> str:
    """One row per file that records its machine; the others are named below the table."""
    rows, unrecorded = [], []
    for name, data in files.items():
        m = machine_of(data)
        if m is None:
            unrecorded.append(f"`{name}`")
            continue
        threads = "not recorded" if m.get("threads") is None else m["threads"]
        recorded = "added afterwards" if m.get("added_afterwards") else "at measurement"
        rows.append(
            [f"`{name}`", m["cpu"], m["cores"], threads, m["torch"], m.get("gpu") or "none", recorded]
        )
    text = table(["file", "CPU", "cores", "threads", "torch", "GPU", "machine recorded"], rows)
    if unrecorded:
        text += (
            "\n\nNo machine recorded (their numbers are counts or accuracies, not timings): "
            + ", ".join(unrecorded)
            + "."
        )
    return text


def _config(row: Json) -> str:
    if row["naive"]:
        return "naive (fp32, NCHW, eager)"
    text = f"{row['precision']}, {'channels-last' if row['channels_last'] else 'NCHW'}"
    return text + (", compiled" if row["compile"] else "")


def _ceiling(row: Json) -> str:
    probe = row.get("probe")
    if probe is None:  # recorded before results said what the probe measured
        return f"{num(row['peak_gflops_per_s'], 0)} (matmul 1024, median)"
    shape = "x".join(map(str, probe["shape"]))
    return f"{num(probe['gflops_per_s'], 0)} ({probe['op']} {shape}, best of {probe['repetitions']})"


def bench_rows(data: Json) -> str:
    """``cnnlab bench --json``: one row per configuration."""
    rows = []
    for r in data["results"]:
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        setup = [r["model"], r["mode"], r["batch_size"], "x".join(map(str, r["input"])), _config(r)]
        speed = [num(r["images_per_s"]), num(r["gflops_per_s"]), _ceiling(r), pct(r["utilization"])]
        rows.append([*setup, *speed, speedup])
    header = ["model", "mode", "batch", "input", "precision, layout", "images/s", "GFLOP/s"]
    return table([*header, "ceiling GFLOP/s", "utilization", "speed-up over naive"], rows)


def deform_rows(data: Json) -> str:
    """``deform_conv.py --json``: DeformConv2d's forward+backward over a plain conv's, per shape."""
    rows = []
    for name, r in data["results"].items():
        s = data["shapes"][name]
        shape = f"({s['batch']}, {s['in_ch']}, {s['out_ch']}, {s['size']}x{s['size']}, {s['stride']})"
        rows.append(
            [name, shape, num(r["module_dcn_ms"]), num(r["module_conv_ms"]), f"{r['module_ratio']:.2f}x"]
        )
        rows[-1] += [num(r["op_dcn_ms"]), num(r["op_conv_ms"]), f"{r['op_ratio']:.2f}x"]
    header = ["shape", "(N, Cin, Cout, HxW, stride)", "module ms", "conv ms", "module / conv"]
    return f"{data['threads']} thread(s), median ms per forward+backward.\n\n" + table(
        [*header, "op ms", "conv ms", "op / conv"], rows
    )


def channels_last_rows(data: Json) -> str:
    """``channels_last.py --json``: NCHW against channels-last, timed round-robin."""
    rows = []
    for p, r in data["results"].items():
        won = f"{r['channels_last_faster_rounds']} of {data['rounds']}"
        rows.append([p, num(r["nchw_ms"], 0), num(r["channels_last_ms"], 0), f"{r['speedup']:.3f}x"])
        rows[-1] += [f"{r['round_speedup_median']:.3f}x", won]
    shape = "x".join(map(str, data["input"]))
    head = f"{data['model']} training, batch {data['batch']}, {shape}, {data['rounds']} rounds.\n\n"
    header = ["precision", "NCHW ms", "channels-last ms", "speed-up", "median per round", "channels-last won"]
    return head + table(header, rows)


def _portable(command: str) -> str:
    """A recorded command without its ``--out`` directory, which was a scratch path of that machine."""
    return re.sub(r"\s--out\s+\S+", "", command)


def accuracy_rows(data: Json) -> str:
    """``time_to_accuracy.py``: the default training over seeds, per precision."""
    rows = []
    for precision, runs in data["runs"].items():
        s = data["summary"][precision]
        accs = ", ".join(pct(r["test_acc"]) for r in runs)
        times = ", ".join(num(r["train_time_s"]) for r in runs)
        seeds = ", ".join(str(r["seed"]) for r in runs)
        rows.append([precision, seeds, accs, f"{pct(s['mean'], 2)} +- {pct(s['std'], 2)}", times])
    text = f"`{_portable(data['command'])}`\n\n"
    text += table(["precision", "seeds", "test accuracy", "mean +- std", "training s"], rows)
    timed = data.get("timed_default_run")
    if timed:
        text += f"\n\nOne timed run, `{_portable(timed['command'])}`:\n\n" + table(
            ["precision", "test accuracy", "training s", "whole command s"],
            [[timed["precision"], pct(timed["test_acc"]), num(timed["train_time_s"]), num(timed["wall_s"])]],
        )
    return text


def zoo_rows(data: Json) -> str:
    """``zoo.py``: every family trained by its recipe, and the small-folder duel."""
    rows = []
    for name, m in data["models"].items():
        errors = [r["error"] for r in m["runs"] if "error" in r]
        first = next((r for r in m["runs"] if "test_acc" in r), None)
        if first is None:
            rows.append([name, "", "", f"failed: {errors[0]}", "", "", "", ""])
            continue
        accs = ", ".join(pct(r["test_acc"]) for r in m["runs"] if "test_acc" in r)
        spread = f"{pct(m['mean'], 2)} +- {pct(m['std'], 2)}" if m["seeds"] > 1 else pct(m["mean"], 2)
        size = "x".join(map(str, first["input_size"]))
        target = (
            f"{pct(m['target'])} in {m['target_s']} s: {'met' if m['met'] else 'missed'}"
            if "met" in m
            else ""
        )
        rows.append(
            [name, size, first["epochs"], accs, spread, num(m["wall_s"]), num(m["images_per_s"]), target]
        )
    text = f"`{_portable(data['command'])}`, on mnist5k\n\n" + table(
        ["model", "input", "epochs", "test accuracy", "mean +- std", "wall s", "images/s", "target"], rows
    )
    duel = data.get("folder")
    if duel:
        text += f"\n\nThe defaults on a class folder of {count(duel['images'])} mnist5k digits:\n\n" + table(
            ["model", "epochs", "test accuracy", "wall s"],
            [
                [
                    f"{who} ({'x'.join(map(str, r['input_size']))})",
                    r["epochs"],
                    pct(r["test_acc"]),
                    num(r["wall_s"]),
                ]
                for who, r in (("default CNN", duel["cnn"]), ("default k-NN", duel["knn"]))
            ],
        )
    return text


def result_kind(data: Json) -> tuple[str, Callable[[Json], str]]:
    """The heading and renderer for a results file, by its shape."""
    if isinstance(data.get("results"), list):
        return "`cnnlab bench`", bench_rows
    if "shapes" in data:
        return "DeformConv2d against a plain convolution", deform_rows
    if "rounds" in data:
        return "Channels-last against NCHW", channels_last_rows
    if "models" in data:
        return "The zoo: every family trained by its recipe", zoo_rows
    if "runs" in data and "summary" in data:
        return "Time to accuracy of the default training", accuracy_rows
    raise ValueError(f"no renderer for this kind of result (keys {sorted(data)})")


# --- docs/figures: one short table per analysis ------------------------------------------------------


def rf(d: Json) -> str:
    stacks = [
        [s["stack"], count(s["weights"]), f"{s['weights_per_c2']:g} C^2", s["receptive_field"]]
        for s in d["vgg"]["stacks"]
    ]
    summary = table(
        ["model", "input", "receptive field px", "stride", "effective RF (half the mass) px", "MACs"],
        [
            [
                d["model"],
                "x".join(map(str, d["input"])),
                d["receptive_field"],
                d["stride"],
                d["effective"]["half_mass_side"],
                count(d["macs"]),
            ]
        ],
    )
    return (
        summary
        + f"\n\nStacks at {d['vgg']['channels']} channels:\n\n"
        + table(["stack", "weights", "per C^2", "receptive field"], stacks)
    )


def inception(d: Json) -> str:
    rows = [
        [m["module"], count(m["macs"]), count(m["macs_without"]), f"x{m['macs_ratio']:.2f}"]
        for m in d["modules"]
    ]
    rows.append(["all nine", count(d["macs"]), count(d["macs_without"]), f"x{d['macs_ratio']:.2f}"])
    return f"At {d['image_size']}x{d['image_size']}.\n\n" + table(
        ["module", "MACs with 1x1 reductions", "MACs without", "without / with"], rows
    )


def scaling(d: Json) -> str:
    rows = []
    for r in d["rows"]:
        ratios = [f"{r['macs_vs_b0']:.2f}", f"{r['flops_factor_eq3']:.2f}", f"{2 ** r['phi']:g}"]
        rows.append(
            [r["model"], r["phi"], r["released_resolution"], count(r["params"]), count(r["macs"]), *ratios]
        )
    header = ["model", "phi", "resolution", "parameters", "MACs", "MACs / B0", "(a b^2 g^2)^phi", "2^phi"]
    return table(header, rows)


def templates(d: Json) -> str:
    rows = [[c, f"{d['correlation_with_own_mean'][c]:.3f}"] for c in d["classes"]]
    head = table(
        ["model", "data", "mean r with own class mean", "mean r with other means", "own mean best match"],
        [
            [
                d["model"],
                d["dataset"],
                f"{d['mean_correlation_own']:.3f}",
                f"{d['mean_correlation_other']:.3f}",
                pct(d["own_mean_is_best_match"], 0),
            ]
        ],
    )
    return head + "\n\n" + table(["class", "r with own class mean"], rows)


def knn(d: Json) -> str:
    metrics = list(d["accuracy"])
    ks = list(d["accuracy"][metrics[0]])
    rows = [[k] + [pct(d["accuracy"][m][k]) for m in metrics] for k in ks]
    fit, best = d["fit"], d["best"]
    text = f"{d['train_size']} stored, {d['queries']} queries on {d['dataset']}.\n\n"
    text += table(["k"] + [f"accuracy, {m}" for m in metrics], rows)
    text += "\n\n" + table(
        ["best", "query time per stored sample (s)", "R^2 of the linear fit"],
        [
            [
                f"{best['metric']}, k={best['k']}: {pct(best['accuracy'])}",
                f"{fit['slope_s_per_stored_sample']:.3g}",
                f"{fit['r2']:.2f}",
            ]
        ],
    )
    return text


def se(d: Json) -> str:
    rows = [[b["block"], b["channels"], f"{b['mean']:.3f}", f"{b['class_spread']:.3f}"] for b in d["blocks"]]
    head = f"{d['model']} on {d['dataset']}, {d['images']} test images.\n\n"
    return head + table(["block", "channels", "mean gate", "std across classes of the mean gate"], rows)


def compare(d: Json) -> str:
    rows = []
    for m in d["models"]:
        trained = [pct(m["test_acc"]), num(m["train_time_s"])] if d.get("trained") else []
        cost = [count(m["params"]), count(m["macs"]), m["receptive_field"], num(m["images_per_s"], 0)]
        rows.append([m["model"], *cost, *trained])
    header = ["model", "parameters", "MACs", "receptive field", "inference images/s"]
    header += ["test accuracy", "training s"] if d.get("trained") else []
    shape = "x".join(map(str, d["input"]))
    head = f"Input {shape}, batch {d['batch_size']}, {d['threads']} threads"
    head += (
        f"; trained {d['epochs']} epochs on {d['data']}, seed {d['seed']}.\n\n"
        if d.get("trained")
        else ".\n\n"
    )
    return head + table(header, rows)


def degradation(d: Json) -> str:
    rows = [
        [
            name,
            r["depth"],
            r["kind"],
            pct(d["final_train_error"][name], 2),
            pct(d["final_test_error"][name], 2),
            num(r["train_time_s"]),
        ]
        for name, r in d["runs"].items()
    ]
    head = f"{d['epochs']} epochs on {d['data']}, seed {d['seed']}.\n\n"
    return head + table(
        ["run", "depth", "kind", "final training error", "final test error", "training s"], rows
    )


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def paths(d: Json) -> str:
    single, plain = d["lesion"]["single"], d["plain"]
    worst = min(single, key=lambda b: b["test_acc"])
    lesions = [
        [
            d["model"],
            pct(d["lesion"]["baseline"]),
            pct(_median([b["test_acc"] for b in single])),
            f"{pct(worst['test_acc'])} ({worst['block']})",
        ],
        [
            plain["model"],
            pct(plain["baseline"]),
            pct(_median([b["test_acc"] for b in plain["single"]])),
            pct(min(b["test_acc"] for b in plain["single"])),
        ],
    ]
    text = table(["model", "intact", "one block deleted: median", "worst"], lesions)
    rand = [[r["k"], pct(r["mean"]), pct(r["min"]), pct(r["max"])] for r in d["lesion"]["random"]]
    text += f"\n\n{d['model']} with k random blocks deleted ({d['lesion']['samples']} samples each):\n\n"
    text += table(["k", "mean", "min", "max"], rand)
    g = d["gradient"]
    lo, hi = g["effective_lengths"]
    return (
        text
        + "\n\n"
        + table(
            [
                "blocks",
                "gradient factor per branch",
                "mean path length of the gradient",
                "mean path length",
                "90% of the gradient",
            ],
            [
                [
                    g["blocks"],
                    f"{g['decay_per_block']:.2f}",
                    f"{g['gradient_mean_length']:.1f}",
                    f"{g['path_mean_length']:.1f}",
                    f"lengths {lo}-{hi}",
                ]
            ],
        )
    )


def offsets(d: Json) -> str:
    layers = [[layer["name"], f"{layer['mean_offset_image_px']:.2f}"] for layer in d["layers"]]
    points = [
        [
            "x".join(map(str, p["point"])),
            p["why"],
            f"{p['spread_ratio']:.2f}",
            f"{p['mean_shift_px']:.2f}",
            pct(p["outside_image"]),
        ]
        for p in d["points"]
    ]
    text = f"{d['model']}, {d['samples_per_point']} sampling points per unit.\n\n"
    text += table(["deformable layer", "mean offset (image px)"], layers)
    return (
        text
        + "\n\n"
        + table(["unit", "chosen as", "spread / regular grid", "mean shift px", "outside the image"], points)
    )


# name: (title, renderer); the order of the page.
ANALYSES: dict[str, tuple[str, Callable[[Json], str]]] = {
    "rf": ("Receptive fields (`cnnlab analyze rf vgg16`)", rf),
    "inception": ("Inception's 1x1 reductions (`cnnlab analyze inception`)", inception),
    "scaling": ("EfficientNet's compound scaling (`cnnlab analyze scaling`)", scaling),
    "templates": ("A linear classifier's templates (`cnnlab analyze templates`)", templates),
    "knn": ("k-nearest neighbours (`cnnlab analyze knn`)", knn),
    "se": ("SE excitations per class (`cnnlab analyze se`)", se),
    "compare": ("Cost against accuracy (`cnnlab compare --train`)", compare),
    "degradation": ("Plain against residual depth (`cnnlab experiment degradation`)", degradation),
    "paths": ("ResNet as an ensemble of paths (`cnnlab analyze paths`)", paths),
    "offsets": ("Deformable sampling points (`cnnlab analyze offsets`)", offsets),
}


# --- the page ----------------------------------------------------------------------------------------

HEADER = """# Results

Every number on this page is rendered from a JSON file that a command wrote: `benchmarks/results/`
holds the benchmarks (`benchmarks/README.md` gives the command behind each file), `docs/figures/` the
analyses' numbers beside their figures. Regenerate the page with `make results`
(`python benchmarks/render.py`); `tests/test_results.py` fails when it differs from the render, so
edit the JSON's producer, never this page."""

BENCH_NOTE = """Images/s, GFLOP/s and utilization are `cnnlab bench`'s (`benchmarks/README.md` says how it
measures them). The ceiling is the probe each row was divided by: a row that records its probe names
the winning product and its shape; older rows were divided by an earlier, smaller probe (the median of
1024x1024 matrix products), so their utilization is not comparable with the newer rows'."""


def render(root: Path = ROOT) -> str:
    """The whole page, from the JSON under ``root``."""
    results = {p.name: load(root, RESULTS / p.name) for p in sorted((root / RESULTS).glob("*.json"))}
    figures = {p.stem: load(root, FIGURES / p.name) for p in sorted((root / FIGURES).glob("*.json"))}
    unknown = sorted(set(figures) - set(ANALYSES))
    if unknown:
        raise ValueError(f"no renderer for docs/figures/{unknown[0]}.json")
    parts = [HEADER, "## Machines", machines({**results, **{f"{n}.json": d for n, d in figures.items()}})]
    parts += ["## Benchmarks", BENCH_NOTE]
    for name, data in results.items():
        title, renderer = result_kind(data)
        parts += [f"### {title}: `{name}`", renderer(data)]
    parts.append("## Analyses")
    for name, (title, renderer) in ANALYSES.items():
        if name in figures:
            parts += [f"### {title}", renderer(figures[name]), f"Figure: [{name}.png](figures/{name}.png)"]
    return "\n\n".join(parts) + "\n"


# --- docs/papers.md ---------------------------------------------------------------------------------

PAPERS_HEADER = """# The papers' recipes

`cnnlab train --model NAME --recipe paper` trains a model with the recipe of its paper instead of its
default one: the paper's optimizer, batch, learning rate, schedule and length. This page is rendered
from those recipes, registered beside each family as its `PAPER_RECIPE` (`make results`;
`tests/test_results.py` fails when it differs), and the number in each table is the one the paper
reports, with its table: what the command aims at, not what cnnlab measured (that is
[results.md](results.md)).

How a paper recipe is applied:

- **The batch and the rate.** A recipe's rate is for its own batch. Without `--batch-size` a run takes
  the paper's batch and so the paper's rate; with another batch the rate is scaled linearly (rate x
  batch / the paper's batch). The default recipes state their rate at a batch of 128, the same rule.
- **The length.** The paper's epochs, never raised to reach `--min-steps`; `--epochs` still wins.
  Where a paper counts iterations, they are turned into epochs of the dataset's training set, as the
  notes say.
- **Flags win.** Every setting given as a flag (`--lr`, `--milestones`, `--gamma`, `--decay-every`,
  ...) overrides the paper's, and `config.json` records `recipe` and the fields the recipe set.
- **Schedules.** torch's own: `MultiStepLR` for divisions at fixed fractions of the run (counted from
  its first step), `StepLR` for a staircase every few epochs (counted after the warm-up), after a
  `LinearLR` or `ConstantLR` warm-up joined by `SequentialLR`. Where a paper divides the rate "when
  the error plateaus", the recipe fixes the milestones and its notes say where.
- **Data.** `imagenet` is an image folder with `train/` and `val/` sub-folders of one folder per
  class (`--data path/to/imagenet`); the augmentation is cnnlab's (padding, random crops, flips), so
  what a paper adds to it is listed in the notes as not reproduced. A model with no paper recipe
  (the baselines, torchvision's one-tower `alexnet`, the `_bn` VGGs) refuses `--recipe paper` in one
  line."""

OPTIMIZER_NAMES = {
    "sgd": "SGD",
    "nesterov": "SGD with Nesterov momentum",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
}


def recipe_summary(r: Json) -> str:
    """One sentence of the settings a recipe trains with, from its fields."""
    decay = f"weight decay {r['weight_decay']:g}" + (
        "" if r["decay_norm_and_bias"] else " (not on 1-D parameters)"
    )
    parts = [
        f"{OPTIMIZER_NAMES[r['optimizer']]}, momentum {r['momentum']:g}, {decay}",
        f"rate {r['lr']:g} at a batch of {r['batch_size'] or 128}",
    ]
    if r["warmup_epochs"] and r["schedule"] != "onecycle":
        held = f"{r['warmup_factor']:g} of it" if r["warmup_factor"] else "a linear ramp up to it"
        epochs = f"{r['warmup_epochs']:g} epoch" + ("" if r["warmup_epochs"] == 1 else "s")
        parts.append(f"{held} for the first {epochs}")
    if r["schedule"] == "step":
        fractions = ", ".join(f"{f:.3g}" for f in r["milestones"])
        parts.append(f"times {r['gamma']:g} at {fractions} of the run")
    elif r["schedule"] == "exponential":
        parts.append(f"times {r['gamma']:g} every {r['decay_every']:g} epochs")
    else:
        parts.append(f"{r['schedule']} schedule")
    parts.append(f"{r['epochs']} epochs")
    if r["label_smoothing"]:
        parts.append(f"label smoothing {r['label_smoothing']:g}")
    if r["ema_decay"]:
        parts.append(f"a moving average of the weights (decay {r['ema_decay']:g}) evaluated and saved")
    return "; ".join(parts) + "."


def reproduce(row: Json, datasets: list[str]) -> str:
    """The command that trains ``row``'s model by its paper, on the paper's data."""
    data = row["paper_recipe"]["data"]
    if data in datasets:
        return f"`cnnlab train --model {row['name']} --data {data} --recipe paper`"
    side = row["default_input_size"][-1]
    return f"`cnnlab train --model {row['name']} --data path/to/{data} --image-size {side} --recipe paper`"


def _chronological(rows: list[Json]) -> tuple[str, str]:
    """A section's place: the first year its source names ("He et al. 2016, Sec. 4.2": 2016), then
    the source itself."""
    source = rows[0]["paper_recipe"]["source"]
    found = re.search(r"\b(19|20)\d\d\b", source)
    return (found.group(0) if found else "9999", source)


def render_papers() -> str:
    """docs/papers.md: one section per recipe (models whose paper recipes differ only in what the
    paper reports share one), the papers in the order of their years, as the course meets them."""
    if str(ROOT / "src") not in sys.path:  # this checkout's recipes, whatever cnnlab is installed
        sys.path.insert(0, str(ROOT / "src"))
    from cnnlab.data import list_datasets
    from cnnlab.models import describe_models

    sections: dict[str, list[Json]] = {}
    for row in describe_models():
        paper = row["paper_recipe"]
        if paper is not None:
            sections.setdefault(json.dumps({**paper, "reports": None}, sort_keys=True), []).append(row)
    parts = [PAPERS_HEADER]
    for rows in sorted(sections.values(), key=_chronological):
        paper = rows[0]["paper_recipe"]
        names = ", ".join(r["name"] for r in rows)
        parts += [f"## {names} ({paper['source']})", f"Data: `{paper['data']}`. {recipe_summary(paper)}"]
        if paper["notes"]:
            parts.append(f"Notes: {paper['notes']}.")
        table_rows = [
            [f"`{r['name']}`", r["paper_recipe"]["reports"] or "no number", reproduce(r, list_datasets())]
            for r in rows
        ]
        parts.append(table(["model", "the paper reports", "command"], table_rows))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page differs from its render")
    args = parser.parse_args(argv)
    status = 0
    for rel, page in ((PAGE, render()), (PAPERS_PAGE, render_papers())):
        path = ROOT / rel
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == page
            print(f"{rel} is {'up to date' if same else 'stale: run make results'}", file=sys.stderr)
            status = status or (0 if same else 1)
        else:
            path.write_text(page, encoding="utf-8")
            print(f"wrote {rel}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
