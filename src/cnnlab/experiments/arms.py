"""What the experiments share: the budget every arm trains under, the training of one arm over seeds,
the small dataset of ``--quick`` runs, and the NAME.json + NAME.png each experiment writes.

An arm is one configuration of the experiment (a model and its options). Every arm of an experiment
trains with the same data, epochs and seeds; its run directories are ``OUT/runs/ARM/seed-S``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..analysis.output import write_outputs
from ..errors import CnnlabError
from ..rundir import read_metrics
from .claims import Spread, all_of, spread

QUICK_SEEDS = (0, 1)  # two, so that a quick run still has a spread
QUICK_PER_CLASS = (40, 20)  # training and test digits per class of the --quick dataset


@dataclass
class Setup:
    """Where and how long an experiment's arms train: the same for every arm."""

    out: Path
    data: str = "mnist5k"
    data_root: str | None = None
    epochs: int | None = None  # None: the experiment's own budget
    seeds: tuple[int, ...] = (0, 1, 2)
    quick: bool = False
    live: bool | None = None
    quiet: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields for every arm
    started: float = field(default_factory=time.perf_counter)  # the experiment's wall time runs from here

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def budget(self, epochs: int, quick_epochs: int = 1) -> int:
        """The epochs every arm trains for: the user's, else the experiment's (its quick one with --quick)."""
        if self.epochs is not None:
            return self.epochs
        return quick_epochs if self.quick else epochs


def comma_separated(text: str, flag: str, kind: type, what: str, example: str) -> list[Any]:
    """The values of an experiment's comma-separated ``flag`` read as ``kind``, or one line naming the
    flag, ``what`` it takes and an ``example``."""
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise CnnlabError(f"{flag} takes comma-separated {what}, e.g. {example}; got {text!r}") from None


def make_setup(
    out_dir: str | os.PathLike[str],
    data: str = "mnist5k",
    seeds: tuple[int, ...] | list[int] | None = None,
    quick: bool = False,
    **kwargs: Any,
) -> Setup:
    """A Setup whose ``--quick`` variant trains two seeds on a few hundred digits of mnist5k."""
    out = Path(out_dir)
    if seeds is None:
        seeds = QUICK_SEEDS if quick else (0, 1, 2)
    if quick and data == "mnist5k":
        data = quick_data(out)
    return Setup(out=out, data=data, seeds=tuple(seeds), quick=quick, **kwargs)


def quick_data(out: Path) -> str:
    """A store of the first 40 training and 20 test digits of each mnist5k class, under ``out``:
    enough for every arm of an experiment to train in a second or two."""
    from ..data import load
    from ..data.base import Dataset
    from ..data.pack import write_store
    from ..data.store import is_store

    target = out / "quick-data"
    if is_store(target):
        return str(target)
    full = load("mnist5k")

    def first(images: torch.Tensor, labels: torch.Tensor, per_class: int) -> tuple[torch.Tensor, ...]:
        keep = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in range(len(full.classes))])
        keep = keep.sort().values
        return images[keep], labels[keep]

    train_x, train_y = first(full.train_images, full.train_labels, QUICK_PER_CLASS[0])
    test_x, test_y = first(full.test_images, full.test_labels, QUICK_PER_CLASS[1])
    subset = Dataset("mnist5k-quick", train_x, train_y, test_x, test_y, full.classes, hflip=full.hflip)
    return str(write_store(subset, target, "the first digits of each mnist5k class"))


def train_arm(
    setup: Setup,
    arm: str,
    model: str,
    epochs: int,
    observe: Any = None,
    **config: Any,
) -> dict[str, Any]:
    """Train ``model`` once per seed of ``setup`` into ``OUT/runs/ARM/seed-S``; ``config`` are further
    TrainConfig fields of this arm. Returns the arm's final numbers as spreads over the seeds, its
    curves per seed, and what ``observe`` (see ``fit``) returned per seed."""
    from ..train import TrainConfig, fit

    runs = []
    for seed in setup.seeds:
        setup.say(f"{arm}: {model}, seed {seed}, {epochs} epochs")
        run_dir = setup.out / "runs" / arm / f"seed-{seed}"
        options = {**setup.options, **config}
        train_config = TrainConfig(
            model=model, data=setup.data, data_root=setup.data_root, epochs=epochs, seed=seed,
            out=str(run_dir), **options,
        )  # fmt: skip
        result = fit(train_config, live=setup.live, quiet=setup.quiet, observe=observe)
        runs.append((run_dir, result, read_metrics(run_dir / "metrics.csv")))
    return {
        "model": model,
        "params": runs[0][1]["params"],
        "dataset": runs[0][1]["dataset"],
        "run_dirs": [str(r[0]) for r in runs],
        "test_acc": spread(r[1]["test_acc"] for r in runs),
        "train_loss": spread(r[2][-1]["train_loss"] for r in runs),
        "train_acc": spread(r[2][-1]["train_acc"] for r in runs),
        "train_time_s": spread(r[1]["train_time_s"] for r in runs),
        "curves": {
            key: [[row[key] for row in r[2]] for r in runs] for key in ("train_loss", "train_acc", "test_acc")
        },
        "observed": [r[1].get("observed", []) for r in runs],
    }


def final(arms: dict[str, dict[str, Any]], key: str) -> dict[str, Spread]:
    return {name: arm[key] for name, arm in arms.items()}


def conclude(
    name: str,
    claim: str,
    setup: Setup,
    findings: list[dict[str, str]],
    columns: list[tuple[str, str, str]],
    rows: list[dict[str, Any]],
    fig: Any,
    **numbers: Any,
) -> dict[str, Any]:
    """The experiment's JSON: the claim, each finding and the overall verdict, the table of arms
    (``columns`` are (key, label, kind) with kind one of pct, int, num, sci, s, x, mb), the setup and
    the experiment's own ``numbers``; written with ``fig`` as NAME.json and NAME.png in ``setup.out``."""
    from ..machine import machine

    result = {
        "experiment": name,
        "claim": claim,
        "verdict": all_of([f["verdict"] for f in findings]),
        "findings": findings,
        "columns": [list(c) for c in columns],
        "arms": rows,
        "setup": {
            "data": setup.data if not setup.quick else "mnist5k (quick subset)",
            "seeds": list(setup.seeds),
            "quick": setup.quick,
            "threads": torch.get_num_threads(),
            **setup.options,
        },
        "seconds": time.perf_counter() - setup.started,
        "machine": machine(),
        **numbers,
    }
    result["files"] = write_outputs(setup.out, name, result, fig)
    return result
