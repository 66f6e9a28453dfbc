"""Shortcuts and the gradient's path to the first layers (He et al., "Deep Residual Learning for Image
Recognition", 2016): the course says the shortcut connections solve the vanishing gradient problem of
deep plain networks, the gradient of a residual network reaching its first layers through the
identity paths.

plain56 and its residual twin resnet56 (``--depth`` chooses other twins) train on the same data, seeds
and budget (``cnnlab train``'s recipe). Before training and after every epoch, on one fixed probe
batch of training images, we take the norm of the loss gradient with respect to every conv weight,
first to last, and compare the first layers' gradient with the last layers'. What differs from the
paper: a budget of minutes on the mnist5k digits. Note that the paper itself doubts the premise for
networks with BatchNorm (Sec. 4.1: BN "ensures forward propagated signals to have non-zero variances"
and the backward gradients "exhibit healthy norms"), and both networks here have it.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from ..data import load
from ..plots import pyplot
from .arms import Setup, conclude, train_arm
from .claims import Spread, finding, higher, show, spread
from .gradients import TOTAL, gradient_observer, probe_size, seed_band

CLAIM = (
    "Shortcut connections keep the gradient alive: relative to the last layers, more gradient reaches "
    "the first layers of resnet56 than of its plain twin plain56, at initialization and during training."
)
HELP = "gradient norm of every conv layer of plain56 and resnet56, at initialization and while training"
DEPTH = 56
EDGE = 6  # conv layers compared at each end: the stem and 2.5 blocks first, 3 blocks last
# ~17 s an epoch for either net on mnist5k on 2 cores, ~0.5 s a probe measurement, ~3 s a run to set
# up: six trainings of 5 epochs in about 9 minutes.
EPOCHS = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--depth", type=int, default=DEPTH, help=f"depth of the plain and residual twins (default {DEPTH})"
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {"depth": args.depth}


def first_to_last(norms: list[float]) -> float:
    """The mean gradient norm of the first EDGE conv layers over that of the last EDGE ones."""
    return statistics.fmean(norms[:EDGE]) / statistics.fmean(norms[-EDGE:])


def per_layer(observed: list[dict[str, Any]]) -> list[list[float]]:
    """Per observation (epoch 0, 1, ...), the gradient norm of each conv layer, first to last."""
    return [[o[TOTAL][layer] for layer in o["layers"]] for o in observed]


def judge(init: dict[str, Spread], end: dict[str, Spread], plain: str, residual: str) -> list[dict[str, str]]:
    """The claim at initialization and after training, on the first-to-last ratio of each twin."""
    out = []
    for when, ratio in (("at initialization", init), ("at the end of training", end)):
        out.append(
            finding(
                f"{when}, the first layers' gradient relative to the last layers' is higher in {residual} "
                f"than in {plain}",
                higher(ratio[residual], ratio[plain]),
                f"first {EDGE} / last {EDGE} conv layers' gradient norm, above 1 where the first get more: "
                f"{show(ratio[residual], digits=3)} against {show(ratio[plain], digits=3)}",
            )
        )
    return out


def run(setup: Setup, depth: int = DEPTH) -> dict[str, Any]:
    """Train plainD and resnetD over the seeds into ``OUT/runs/MODEL``, measuring the gradient of
    every conv layer on a probe batch; write vanishing.json and vanishing.png."""
    plain, residual = f"plain{depth}", f"resnet{depth}"
    epochs = setup.budget(EPOCHS)
    data = load(setup.data, root=setup.data_root, cache=True)
    observe = gradient_observer(data, size=probe_size(setup))
    arms: dict[str, dict[str, Any]] = {}
    for name in (plain, residual):
        trained = train_arm(setup, name, name, epochs, observe=observe)
        layers = trained["observed"][0][0]["layers"]
        norms = [per_layer(seen) for seen in trained["observed"]]
        del trained["observed"]  # kept as ``norms``
        ratios = [[first_to_last(n) for n in per_seed] for per_seed in norms]
        arms[name] = {**trained, "layers": layers, "norms": norms, "ratios": ratios}
    init = {name: spread(r[0] for r in a["ratios"]) for name, a in arms.items()}
    end = {name: spread(r[-1] for r in a["ratios"]) for name, a in arms.items()}
    rows = [
        {"arm": name, "params": a["params"], "convs": len(a["layers"]), "test_acc": a["test_acc"],
         "init": init[name], "end": end[name], "seconds": a["train_time_s"]}
        for name, a in arms.items()
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("convs", "conv layers", "int"),
        ("test_acc", "test accuracy", "pct"), ("init", f"first/last {EDGE} gradient, init", "sci"),
        ("end", "at the end", "sci"), ("seconds", "training time", "s"),
    ]  # fmt: skip
    result = {"epochs": epochs, "depth": depth, "edge": EDGE, "runs": arms}
    return conclude(
        "vanishing", CLAIM, setup, judge(init, end, plain, residual), columns, rows, plot(result), **result
    )


def plot(r: dict[str, Any]) -> Any:
    """Per net, the gradient norm of each conv layer (mean over seeds, log scale) after each epoch,
    shaded from dark (initialization) to light (the end); then the first-to-last ratio per epoch."""
    plt = pyplot()

    fig, axes = plt.subplots(
        1, 3, figsize=(16, 4.8), layout="constrained", gridspec_kw={"width_ratios": [1.2, 1.2, 1]}
    )
    colors = dict(zip(r["runs"], ("tab:red", "tab:blue"), strict=True))
    for ax, (name, arm) in zip(axes[:2], r["runs"].items(), strict=True):
        per_epoch = seed_band(arm["norms"])[0]
        shades = plt.cm.viridis([0.85 * e / max(1, len(per_epoch) - 1) for e in range(len(per_epoch))])
        for epoch, (norms, shade) in enumerate(zip(per_epoch, shades, strict=True)):
            label = "initialization" if epoch == 0 else f"after epoch {epoch}"
            width = 2 if epoch in (0, len(per_epoch) - 1) else 1
            ax.plot(range(1, len(norms) + 1), norms, color=shade, lw=width, label=label)
        ax.set(yscale="log", xlabel="conv layer, first to last", ylabel="gradient norm of its weight")
        ax.set_title(f"{name}, mean of {len(arm['norms'])} seeds", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[1].sharey(axes[0])
    ax = axes[2]
    for name, arm in r["runs"].items():
        mean, low, high = seed_band(arm["ratios"])
        ax.plot(range(len(mean)), mean, "o-", color=colors[name], label=name)
        ax.fill_between(range(len(mean)), low, high, color=colors[name], alpha=0.15)
    ax.axhline(1, color="gray", lw=0.8, ls="--")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(
        yscale="log",
        xlabel="epoch (0: initialization)",
        ylabel=f"first {r['edge']} / last {r['edge']} layers",
    )
    ax.set_title("gradient reaching the first layers, relative to the last", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
