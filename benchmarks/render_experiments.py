"""The experiments' part of docs/results.md: one section per ``docs/experiments/NAME.json`` that
``cnnlab experiment NAME`` wrote, in the order of the course. Each says the claim, the verdict, every
finding with its evidence, and the table of arms as the experiment's columns describe it (cells formatted
by ``cnnlab.experiments.claims.cell``, the CLI's and the report's formatter)."""

from __future__ import annotations

import sys
from pathlib import Path

from render_format import Json, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cnnlab.experiments import EXPERIMENTS
from cnnlab.experiments.claims import cell, sentence

EXPERIMENTS_DIR = Path("docs/experiments")


def anchor(name: str) -> str:
    """The heading's anchor on GitHub, for links from the README's claim table."""
    return f"experiment-{name}"


def experiment(name: str, d: Json) -> str:
    setup = d["setup"]
    epochs = f", {d['epochs']} epochs per arm" if "epochs" in d else ""
    took = f", {d['seconds'] / 60:.1f} minutes on {d['machine']['cores']} cores" if "seconds" in d else ""
    lines = [
        f'<a id="{anchor(name)}"></a>',
        "",
        f"**Claim.** {d['claim']}",
        "",
        f"**Verdict: {sentence(d['verdict'])}.** `cnnlab experiment {name}` on {setup['data']}, seeds "
        f"{', '.join(map(str, setup['seeds']))}{epochs}{took}; cells are the mean ± standard deviation "
        "over seeds.",
        "",
    ]
    lines += [f"- {f['verdict']}: {f['claim']} ({f['evidence']})" for f in d["findings"]]
    columns = d["columns"]
    rows = [[cell(row.get(key), kind) for key, _, kind in columns] for row in d["arms"]]
    return "\n".join(lines) + "\n\n" + table([label for _, label, _ in columns], rows)


def render_experiments(found: dict[str, Json]) -> list[str]:
    """The sections of the experiments found, in the registry's order; an unknown name is an error."""
    unknown = sorted(set(found) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"no experiment named {unknown[0]} (docs/experiments/{unknown[0]}.json)")
    parts = []
    for name in EXPERIMENTS:
        if name in found:
            parts += [
                f"### `{name}`",
                experiment(name, found[name]),
                f"Figure: [{name}.png](experiments/{name}.png)",
            ]
    return parts
