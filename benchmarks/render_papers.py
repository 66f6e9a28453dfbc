"""docs/papers.md: rendered from the papers' recipes registered beside the models (`render.py` writes it)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from render_format import Json, table

ROOT = Path(__file__).resolve().parent.parent


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
