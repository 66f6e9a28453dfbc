"""Residual networks as ensembles of relatively shallow paths (Veit, Wilber and Belongie, NeurIPS
2016), over seeds: deleting one block of a trained ResNet costs it little while deleting one layer
block of its plain twin ruins it, and the gradient comes mainly from paths much shorter than the
network. Each seed's resnet20 and plain20 are measured by ``analysis.paths`` (the lesion study and
the gradient per path length); what differs from the paper is said there.
"""

from __future__ import annotations

import statistics
from typing import Any

from ..analysis.paths import paths_study, plot_paths
from .arms import Setup, conclude, train_arm
from .claims import Spread, finding, higher, lower, show, spread

CLAIM = (
    "A residual network behaves like an ensemble of relatively shallow paths: deleting one of its "
    "blocks costs little where deleting a block of its plain twin ruins it, and its gradient comes "
    "mainly from paths shorter than the average path."
)
HELP = "resnet20 and plain20 lesioned, and the gradient per path length: an ensemble of paths?"
EPOCHS = 6  # about 5 minutes for three seeds of both nets on mnist5k on 2 cores
RESIDUAL, PLAIN = "resnet20", "plain20"


def judge(
    residual_lesioned: Spread, plain_lesioned: Spread, gradient_length: Spread, path_length: float
) -> list:
    return [
        finding(
            f"with one block deleted, {RESIDUAL} keeps a higher median test accuracy than {PLAIN}",
            higher(residual_lesioned, plain_lesioned),
            f"{show(residual_lesioned, 100, unit='%')} against {show(plain_lesioned, 100, unit='%')}",
        ),
        finding(
            "the mean path length of the gradient is shorter than the mean length of all paths",
            lower(gradient_length, path_length),
            f"{show(gradient_length)} against {path_length:g} blocks",
        ),
    ]


def run(setup: Setup) -> dict[str, Any]:
    epochs = setup.budget(EPOCHS)
    residual = train_arm(setup, RESIDUAL, RESIDUAL, epochs)
    plain = train_arm(setup, PLAIN, PLAIN, epochs)
    lesion_samples, samples = (2, 1) if setup.quick else (10, 5)
    studies = []
    for seed, res_dir, plain_dir in zip(setup.seeds, residual["run_dirs"], plain["run_dirs"], strict=True):
        setup.say(f"lesion study and gradient per path length, seed {seed}")
        studies.append(
            paths_study(res_dir, plain=plain_dir, samples=samples, lesion_samples=lesion_samples, seed=seed)
        )
    median = {
        name: spread(statistics.median(b["test_acc"] for b in part["single"]) for part in parts)
        for name, parts in (
            (RESIDUAL, [s["lesion"] for s in studies]),
            (PLAIN, [s["plain"] for s in studies]),
        )
    }
    length = spread(s["gradient"]["gradient_mean_length"] for s in studies)
    path_length = studies[0]["gradient"]["path_mean_length"]
    rows = [
        {"arm": name, "params": arm["params"], "test_acc": arm["test_acc"], "lesioned": median[name],
         "gradient_length": length if name == RESIDUAL else None}
        for name, arm in ((RESIDUAL, residual), (PLAIN, plain))
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("test_acc", "test accuracy", "pct"),
        ("lesioned", "one block deleted: median accuracy", "pct"),
        ("gradient_length", "mean path length of the gradient", "num"),
    ]  # fmt: skip
    fig = plot_paths(studies[0])
    fig.suptitle(
        f"seed {setup.seeds[0]} shown; over {len(setup.seeds)} seeds, one block deleted: {RESIDUAL} "
        f"{show(median[RESIDUAL], 100, 1, '%')}, {PLAIN} {show(median[PLAIN], 100, 1, '%')}",
        fontsize=9,
    )
    findings = judge(median[RESIDUAL], median[PLAIN], length, path_length)
    numbers = {"epochs": epochs, "per_seed": studies, "runs": {RESIDUAL: residual, PLAIN: plain}}
    return conclude("paths", CLAIM, setup, findings, columns, rows, fig, **numbers)
