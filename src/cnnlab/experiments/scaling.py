"""Compound scaling (Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, Sec. 3.3 and Fig. 8): given more compute, scaling a network's depth, width and
input resolution together, by ``alpha**phi``, ``beta**phi`` and ``gamma**phi`` with ``alpha beta^2
gamma^2 ~ 2``, reaches a higher accuracy than scaling any one of them to the same FLOPS.

From a small base (EfficientNet-B0 at a quarter of its depth and width, 36 px), each rule scales one
dimension (depth: ``2**phi``; width and resolution: ``2**(phi / 2)``, since MACs grow with their
square) or all three (the paper's ``alpha, beta, gamma = 1.2, 1.1, 1.15``), and ``phi`` is chosen for
each rule so that the measured MACs come as close as the rounding of layers, channels and pixels allows
to 2x and 4x the base's. Every network trains on the same data, seeds and budget. What differs from
the paper: a few epochs on mnist5k rather than ImageNet to convergence, a base of a few hundred
thousand MACs rather than B0's 0.39 G, and digits of 28 px, so that the larger sides are upsampled
digits: resolution adds finer feature maps but no detail the images did not have.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from ..analysis.costs import count_macs
from ..data import load, resize, source_kind
from ..data.pack import write_store
from ..data.store import is_store
from ..errors import CnnlabError
from ..models import create_model
from ..models.efficientnet import compound_scaling
from ..plots import pyplot
from ..rundir import read_config
from .arms import Setup, comma_separated, conclude, train_arm
from .claims import Spread, all_of, finding, higher, show

CLAIM = (
    "Compound scaling beats scaling one dimension: at the same MACs, a network scaled in depth, width "
    "and resolution together is more accurate than one scaled in depth, width or resolution alone."
)
HELP = "a small EfficientNet scaled in depth, width, resolution or all three to 2x and 4x its MACs"
MODEL = "efficientnet_b0"
# One MBConv a stage, 8-80 channels, and 36 px: at 32, the least side, every feature map has a side
# of a power of two and one pixel more doubles the MACs (every map grows by one), so that the
# resolution could not be scaled by less than 2x.
BASE_DEPTH, BASE_WIDTH, BASE_SIDE = 0.25, 0.25, 36
TARGETS = (2.0, 4.0)  # MACs over the base's
# (depth, width, resolution) multipliers of each rule at phi: each about doubles the MACs per unit.
RULES: dict[str, Callable[[float], tuple[float, float, float]]] = {
    "depth": lambda phi: (2**phi, 1.0, 1.0),
    "width": lambda phi: (1.0, 2 ** (phi / 2), 1.0),
    "resolution": lambda phi: (1.0, 1.0, 2 ** (phi / 2)),
    "compound": compound_scaling,
}
SEARCH_STEPS, TOLERANCE = 8, 0.01  # steps of the search for phi; log2 of the MACs' ratio to the target
# CPU seconds of the training steps of an epoch of mnist5k on one thread, where resnet20 takes 12.5:
# the base 4, the 2x networks 6-10, the 4x ones 10-18, 90 for the nine. Two threads speed these thin
# networks up less than resnet20 (about 6.5 s an epoch on 2 cores): 50-80 s an epoch for the nine, so
# 3 epochs of three seeds in 8-12 minutes. The base reaches ~80% in 3-4 epochs, compound-4x ~92%.
EPOCHS = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--targets",
        default=",".join(f"{t:g}" for t in TARGETS),
        help=f"comma-separated MACs of the scaled networks over the base's (default "
        f"{','.join(f'{t:g}' for t in TARGETS)})",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    targets = comma_separated(args.targets, "--targets", float, "numbers", "2,4")
    if not all(1 < t <= 64 for t in targets) or sorted(set(targets)) != targets:
        raise CnnlabError(
            f"--targets must be increasing numbers above 1 and at most 64, got {args.targets!r}"
        )
    return {"targets": targets}


def network(rule: str, phi: float) -> dict[str, Any]:
    """The base scaled by ``rule`` at ``phi``: its model options and side."""
    depth, width, resolution = RULES[rule](phi)
    return {
        "depth_mult": round(BASE_DEPTH * depth, 4),
        "width_mult": round(BASE_WIDTH * width, 4),
        "side": round(BASE_SIDE * resolution),
    }


def macs_of(net: dict[str, Any], in_chans: int, num_classes: int) -> int:
    with torch.device("meta"):
        model = create_model(
            MODEL, num_classes=num_classes, in_chans=in_chans, depth_mult=net["depth_mult"],
            width_mult=net["width_mult"],
        )  # fmt: skip
    return count_macs(model, (in_chans, net["side"], net["side"]))


def closest(rule: str, target: float, macs: Callable[[dict[str, Any]], int]) -> dict[str, Any]:
    """The network of ``rule`` whose MACs come closest to ``target`` (absolute MACs). The secant method
    on log2 MACs against phi, from the phi at which the rule nominally reaches the target (MACs grow
    about 2**phi); layers, channels and pixels are whole numbers, so MACs climb in steps, and the
    closest network met is kept."""
    phi, best, last = math.log2(target / macs(network(rule, 0.0))), None, None
    for _ in range(SEARCH_STEPS):
        net = network(rule, phi)
        net["macs"] = macs(net)
        gap = math.log2(target / net["macs"])
        if best is None or abs(gap) < best[0]:
            best = (abs(gap), {"rule": rule, "phi": round(phi, 4), **net})
        if abs(gap) < TOLERANCE:
            break
        slope = (last[1] - gap) / (phi - last[0]) if last is not None and phi != last[0] else 1.0
        last = (phi, gap)
        phi += gap / (slope if slope > 0.1 else 1.0)  # on a step's flat, a nominal step
    return best[1]  # type: ignore[index]


def judge(acc: dict[str, Spread], arms: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """At each MACs target, compound's accuracy against each single-dimension rule's; ``arms`` by name
    hold their ``rule``, ``target`` and ``macs_ratio``."""

    def text(name: str) -> str:
        return f"{arms[name]['rule']} ({arms[name]['macs_ratio']:.2f}x) {show(acc[name], 100, unit='%')}"

    findings = []
    for target in sorted({a["target"] for a in arms.values() if a["rule"] != "base"}):
        level = {a["rule"]: name for name, a in arms.items() if a["target"] == target}
        single = [level[rule] for rule in ("depth", "width", "resolution")]
        findings.append(
            finding(
                f"at {target:g}x the base's MACs, compound scaling is more accurate than depth, width and "
                "resolution alone",
                all_of([higher(acc[level["compound"]], acc[name]) for name in single]),
                "; ".join(text(name) for name in [level["compound"], *single]),
            )
        )
    return findings


def run(setup: Setup, targets: list[float] | tuple[float, ...] = TARGETS) -> dict[str, Any]:
    """Train the base, find each rule's network at each target, train those; write scaling.json/.png."""
    epochs = setup.budget(EPOCHS)
    base = network("compound", 0.0)
    arms = {
        "base": {"rule": "base", "target": 1.0, "phi": 0.0, **base, **_train(setup, "base", base, epochs)}
    }
    config = read_config(arms["base"]["run_dirs"][0])
    cache: dict[tuple[float, float, int], int] = {}

    def macs(net: dict[str, Any]) -> int:
        key = (net["depth_mult"], net["width_mult"], net["side"])
        if key not in cache:
            cache[key] = macs_of(net, config.in_chans, config.num_classes)
        return cache[key]

    base_macs = macs(base)
    arms["base"].update(macs=base_macs, macs_ratio=1.0)
    for target in targets:
        for rule in RULES:
            net = closest(rule, target * base_macs, macs)
            name = f"{rule}-{target:g}x"
            setup.say(f"{name}: depth x{net['depth_mult']:g}, width x{net['width_mult']:g}, {net['side']} px")
            arms[name] = {"target": target, **net, "macs_ratio": net["macs"] / base_macs}
            arms[name].update(_train(setup, name, net, epochs))
    rows = [
        {"arm": name, "phi": a["phi"], "depth": a["depth_mult"], "width": a["width_mult"], "side": a["side"],
         "params": a["params"], "macs": a["macs"], "ratio": a["macs_ratio"], "test_acc": a["test_acc"],
         "seconds": a["train_time_s"]}
        for name, a in arms.items()
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("phi", "phi", "num"), ("depth", "depth mult.", "num"),
        ("width", "width mult.", "num"),
        ("side", "side (px)", "int"), ("params", "parameters", "int"), ("macs", "MACs", "int"),
        ("ratio", "MACs / base's", "x"), ("test_acc", "test accuracy", "pct"),
        ("seconds", "training time", "s"),
    ]  # fmt: skip
    findings = judge({n: a["test_acc"] for n, a in arms.items()}, arms)
    result = {"epochs": epochs, "model": MODEL, "targets": list(targets), "runs": arms}
    return conclude("scaling", CLAIM, setup, findings, columns, rows, plot(result), **result)


def _train(setup: Setup, name: str, net: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Train one network at its side: the data resized by the run, or a packed store, which keeps the
    size it was packed at, packed again at that side (once, under OUT/data)."""
    side = net["side"]
    if source_kind(setup.data) == "store":
        store = setup.out / "data" / f"{side}px"
        if not is_store(store):
            write_store(resize(load(setup.data), side), store, f"{setup.data} resized to {side}x{side}")
        setup = dataclasses.replace(setup, data=str(store))
    kwargs = {"depth_mult": net["depth_mult"], "width_mult": net["width_mult"]}
    return train_arm(setup, name, MODEL, epochs, model_kwargs=kwargs, image_size=side)


def plot(r: dict[str, Any]) -> Any:
    """Accuracy against MACs, one line per rule from the base, bars from the lowest to the highest seed
    (the paper's Fig. 8)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    arms = r["runs"]
    base = arms["base"]
    for i, rule in enumerate(RULES):
        line = [base] + [a for a in arms.values() if a["rule"] == rule]
        x = [a["macs"] / 1e6 for a in line]
        mean = [100 * a["test_acc"]["mean"] for a in line]
        low = [m - 100 * a["test_acc"]["min"] for m, a in zip(mean, line, strict=True)]
        high = [100 * a["test_acc"]["max"] - m for m, a in zip(mean, line, strict=True)]
        style = "o-" if rule == "compound" else "s--"
        ax.errorbar(x, mean, yerr=[low, high], fmt=style, capsize=4, color=f"C{i}", label=f"scale {rule}")
        for a in line[1:]:
            ax.annotate(
                f"{a['macs_ratio']:.2f}x", (a["macs"] / 1e6, 100 * a["test_acc"]["mean"]),
                textcoords="offset points", xytext=(4, 6 - 9 * i), fontsize=7, color=f"C{i}",
            )  # fmt: skip
    ax.set(xlabel="MACs per image (millions)", ylabel="test accuracy (%)")
    ax.set_title(
        f"{r['model']} from depth x{base['depth_mult']:g}, width x{base['width_mult']:g}, {base['side']} px, "
        f"{r['epochs']} epochs; bars from the lowest to the highest seed"
    )
    ax.title.set_fontsize(9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig
