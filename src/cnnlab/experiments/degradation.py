"""The degradation problem (He et al., "Deep Residual Learning for Image Recognition", 2016, Fig. 1
and 6): a deeper plain network ends with a higher *training* error than a shallower one, so the
problem is optimization, not overfitting; the residual twins of the same depths do not degrade.

The plain and residual CIFAR networks of each depth train on the same data, seeds and budget
(``cnnlab train``'s recipe). What differs from the paper: a budget of minutes, not 64k iterations,
and by default the embedded mnist5k digits rather than CIFAR-10.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import CnnlabError
from ..models import list_models
from ..plots import pyplot
from .arms import Setup, comma_separated, conclude, train_arm
from .claims import Spread, finding, higher, no_worse, show, spread

CLAIM = (
    "A deeper plain network ends training with a higher training error than a shallower one (the "
    "degradation problem), and its residual twin does not."
)
HELP = "plain and residual twins of two depths: does the deeper plain net train worse?"
DEPTHS = (20, 56)
EPOCHS = 5  # about 12 minutes for three seeds of depths 20 and 56 on mnist5k on 2 cores


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--depths",
        default=",".join(map(str, DEPTHS)),
        help=f"comma-separated depths of registered twins (default {','.join(map(str, DEPTHS))})",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {"depths": comma_separated(args.depths, "--depths", int, "depths", "20,56")}


def twin_names(depths: list[int]) -> list[tuple[int, str, str]]:
    """(depth, plain, residual) model names, checked to be registered."""
    if len(depths) < 2 or sorted(set(depths)) != list(depths):
        raise CnnlabError(f"--depths needs at least two increasing depths, e.g. 20,56; got {depths}")
    known = set(list_models())
    out = []
    for d in depths:
        plain, residual = f"plain{d}", f"resnet{d}"
        if plain not in known or residual not in known:
            have = sorted(int(m[5:]) for m in known if m.startswith("plain") and m[5:].isdigit())
            raise CnnlabError(f"no plain/residual twins of depth {d}; depths: {', '.join(map(str, have))}")
        out.append((d, plain, residual))
    return out


def judge(train_error: dict[str, Spread], twins: list[tuple[int, str, str]]) -> list[dict[str, str]]:
    """Both halves of the claim, on the final training error of the shallowest and deepest twins."""
    (d0, plain0, res0), (d1, plain1, res1) = twins[0], twins[-1]
    e = train_error
    return [
        finding(
            f"plain{d1} ends with a higher training error than plain{d0}",
            higher(e[plain1], e[plain0]),
            f"{show(e[plain1], 100, unit='%')} against {show(e[plain0], 100, unit='%')}",
        ),
        finding(
            f"resnet{d1} ends with a training error no higher than resnet{d0}",
            no_worse(e[res0], e[res1]),
            f"{show(e[res1], 100, unit='%')} against {show(e[res0], 100, unit='%')}",
        ),
    ]


def run(setup: Setup, depths: list[int] | tuple[int, ...] = DEPTHS) -> dict[str, Any]:
    """Train every twin over the seeds into ``OUT/runs/MODEL``; write degradation.json and .png."""
    twins = twin_names(list(depths))
    epochs = setup.budget(EPOCHS)
    arms: dict[str, dict[str, Any]] = {}
    for depth, plain, residual in twins:
        for kind, name in (("plain", plain), ("residual", residual)):
            arms[name] = {"depth": depth, "kind": kind, **train_arm(setup, name, name, epochs)}
    train_error = {name: _error(a["train_acc"]) for name, a in arms.items()}
    test_error = {name: _error(a["test_acc"]) for name, a in arms.items()}
    rows = [
        {"arm": name, "depth": a["depth"], "kind": a["kind"], "params": a["params"],
         "train_error": train_error[name], "test_error": test_error[name], "seconds": a["train_time_s"]}
        for name, a in arms.items()
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"),
        ("train_error", "final training error", "pct"), ("test_error", "final test error", "pct"),
        ("seconds", "training time", "s"),
    ]  # fmt: skip
    result = {"epochs": epochs, "depths": list(depths), "runs": arms}
    return conclude(
        "degradation", CLAIM, setup, judge(train_error, twins), columns, rows, plot(result), **result
    )


def _error(acc: Spread) -> Spread:
    return spread(1 - a for a in acc["values"])


def plot(r: dict[str, Any]) -> Any:
    """Training (dashed) and test (solid) error per epoch, the mean over seeds, plain and residual apart."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", sharey=True)
    depths = r["depths"]
    shades = plt.cm.viridis([0.15 + 0.7 * i / max(1, len(depths) - 1) for i in range(len(depths))])
    colors = dict(zip(depths, shades, strict=True))
    for ax, kind in zip(axes, ("plain", "residual"), strict=True):
        for name, arm in r["runs"].items():
            if arm["kind"] != kind:
                continue
            for key, style, width in (("train_acc", "--", 1), ("test_acc", "-", 2)):
                per_seed = arm["curves"][key]
                mean = [100 * (1 - sum(v) / len(v)) for v in zip(*per_seed, strict=True)]
                label = f"{name} {'train' if key == 'train_acc' else 'test'}"
                ax.plot(
                    range(1, len(mean) + 1), mean, style, color=colors[arm["depth"]], lw=width, label=label
                )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        seeds = len(next(iter(r["runs"].values()))["run_dirs"])
        ax.set_title(f"{kind} networks, mean of {seeds} seeds", fontsize=10)
    axes[0].set_ylabel("error (%), dashed: training, solid: test")
    return fig
