"""Squeeze-and-Excitation (Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018): an SE
block on every residual branch buys accuracy for a few percent more parameters and almost no MACs
(SE-ResNet-50: +10% parameters, +0.26% GFLOPs, CPU inference +2%; Table 2 and Sec. 4), and the
gain holds over the reduction ratios r of its ablation (journal version, 2 to 32). And (Sec. 7.2) the
early SE blocks excite the same channels whatever the class, the deeper ones grow class-specific.

resnet20 trains against resnet20 with an SE block of reduction r in every block (``se_resnet20`` is
r = 16) on the same data, seeds and budget; parameters and MACs are counted, the images per second
measured as ``cnnlab eval`` runs the model, and the excitations of each seed's r = 16 network read by
``analysis.se``. What differs from the paper: a budget of minutes on mnist5k, not ImageNet; ResNet-20's
16-64 channels, where the SE width C/r is rounded to a multiple of 8, at least 8, as timm does, so
several r build the same network: each network is trained once and its numbers shown for every r
that builds it (the table's "SE widths" column says which).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from ..analysis.compare import SPEED_BATCH_SIZE, inference_speed
from ..analysis.se import se_study
from ..analysis.summary import summarize
from ..errors import CnnlabError
from ..models import create_model
from ..plots import pyplot
from ..rundir import load_run, read_config
from .arms import Setup, comma_separated, conclude, train_arm
from .claims import Spread, finding, higher, show, spread, within

CLAIM = (
    "Squeeze-and-excitation gains accuracy at a small cost: resnet20 with an SE block of reduction r "
    "(4 to 32) in every block beats plain resnet20 for a few percent more parameters, almost no more "
    "MACs and little speed; its early SE blocks excite channels alike for every class, its last one "
    "class-specifically."
)
HELP = "resnet20 against se_resnet20 at r = 4-32: accuracy, parameters, MACs, speed, class-specificity"
BASE = "resnet20"
REDUCTIONS = (4, 8, 16, 32)
STUDY_REDUCTION = 16  # the paper's r, and se_resnet20's: the network whose excitations are read
# resnet20 takes ~6.5 s an epoch of mnist5k on 2 cores, its SE twins ~13% more (measured as CPU time);
# at ResNet-20's widths r = 8, 16 and 32 build one network, so three networks train: 3 x 3 seeds x 8
# epochs, about 9-10 minutes with the timings and the excitations. Five distinct networks would take 15.
EPOCHS = 8
# "A small cost", from the paper's SE-ResNet-50: +10% parameters, +0.26% MACs, and a GPU training
# step 10% slower (190 -> 209 ms; CPU inference +2%).
MAX_EXTRA_PARAMS, MAX_EXTRA_MACS, MIN_SPEED_RATIO = 0.10, 0.02, 0.90
SPEED_REPEATS = 3  # images/s measured this often per network, interleaved, for a spread


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reductions",
        default=",".join(map(str, REDUCTIONS)),
        help=f"comma-separated SE reduction ratios r (default {','.join(map(str, REDUCTIONS))})",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    reductions = comma_separated(args.reductions, "--reductions", int, "integers", "4,16")
    if not reductions or min(reductions) < 1 or len(set(reductions)) != len(reductions):
        raise CnnlabError(f"--reductions must be distinct integers of at least 1, got {args.reductions!r}")
    return {"reductions": reductions}


def se_widths(reduction: int) -> tuple[int, ...]:
    """The width C/r of the SE blocks of each stage of resnet20 at reduction ``reduction``, as built."""
    with torch.device("meta"):
        model = create_model(BASE, se_reduction=reduction)
    return tuple(stage[0].se.fc1.out_channels for stage in model.stages)


def judge(
    acc: dict[str, Spread],
    extra_params: dict[str, float],
    extra_macs: dict[str, float],
    speed_ratio: dict[str, Spread],
    first: Spread,
    last: Spread,
) -> list[dict[str, str]]:
    """The claim on the SE arm of highest mean accuracy against ``BASE`` (every dict is by arm; the
    extras are fractions over ``BASE``), and the class spread of the last SE block against the first."""
    best = max((a for a in acc if a != BASE), key=lambda a: acc[a]["mean"])
    return [
        finding(
            f"{best}, the most accurate SE arm, ends with a higher test accuracy than {BASE}",
            higher(acc[best], acc[BASE]),
            f"{show(acc[best], 100, unit='%')} against {show(acc[BASE], 100, unit='%')}",
        ),
        finding(
            f"{best} has at most {MAX_EXTRA_PARAMS:.0%} more parameters than {BASE}",
            within(extra_params[best], 0.0, MAX_EXTRA_PARAMS),
            f"+{100 * extra_params[best]:.2f}%",
        ),
        finding(
            f"{best} costs at most {MAX_EXTRA_MACS:.0%} more MACs than {BASE}",
            within(extra_macs[best], 0.0, MAX_EXTRA_MACS),
            f"+{100 * extra_macs[best]:.3f}%",
        ),
        finding(
            f"{best} runs at least {MIN_SPEED_RATIO:.0%} of {BASE}'s images per second",
            within(speed_ratio[best], MIN_SPEED_RATIO, math.inf),
            f"{100 * speed_ratio[best]['mean']:.1f}% of its images/s ({100 * speed_ratio[best]['min']:.1f}"
            f"-{100 * speed_ratio[best]['max']:.1f}% over {len(speed_ratio[best]['values'])} timings)",
        ),
        finding(
            "the last SE block's excitations differ more between classes than the first's",
            higher(last, first),
            f"class spread {show(last, digits=4)} against {show(first, digits=4)}",
        ),
    ]


def run(setup: Setup, reductions: list[int] | tuple[int, ...] = REDUCTIONS) -> dict[str, Any]:
    """Train resnet20 and each distinct SE network over the seeds, measure them, read the excitations
    of the r = 16 network (or the first r), and write se.json and se.png."""
    epochs = setup.budget(EPOCHS)
    arms = {BASE: {"reduction": None, "se_widths": None, **train_arm(setup, BASE, BASE, epochs)}}
    built: dict[tuple[int, ...], str] = {}  # SE widths -> the arm that trained that network
    for r in reductions:
        name, widths = f"se-r{r}", se_widths(r)
        if widths in built:
            setup.say(f"{name}: the same network as {built[widths]} (SE widths {widths}), not trained again")
            arms[name] = {**arms[built[widths]], "reduction": r, "same_as": built[widths]}
            continue
        built[widths] = name
        arm = train_arm(setup, name, BASE, epochs, model_kwargs={"se_reduction": r})
        arms[name] = {"reduction": r, "se_widths": widths, **arm}
    measured = _measure({n: a["run_dirs"][0] for n, a in arms.items() if "same_as" not in a}, setup)
    for name, arm in arms.items():
        arm.update(measured[arm.get("same_as", name)])
    base = arms[BASE]
    for arm in arms.values():
        arm["extra_params"] = arm["params"] / base["params"] - 1
        arm["extra_macs"] = arm["macs"] / base["macs"] - 1
        arm["speed_ratio"] = spread(
            s / b for s, b in zip(arm["speed"]["values"], base["speed"]["values"], strict=True)
        )
    studied = f"se-r{STUDY_REDUCTION if STUDY_REDUCTION in reductions else reductions[0]}"
    studies = _excitations(arms[studied]["run_dirs"], setup)
    first = spread(s["class_spread"][0] for s in studies)
    last = spread(s["class_spread"][-1] for s in studies)
    findings = judge(
        {n: a["test_acc"] for n, a in arms.items()},
        {n: a["extra_params"] for n, a in arms.items()},
        {n: a["extra_macs"] for n, a in arms.items()},
        {n: a["speed_ratio"] for n, a in arms.items()},
        first,
        last,
    )
    rows = [
        {"arm": name, "widths": "-" if a["se_widths"] is None else "/".join(map(str, a["se_widths"])),
         "params": a["params"], "macs": a["macs"], "test_acc": a["test_acc"], "speed": a["speed"],
         "speed_ratio": a["speed_ratio"], "seconds": a["train_time_s"]}
        for name, a in arms.items()
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("widths", "SE widths by stage", "int"), ("params", "parameters", "int"),
        ("macs", "MACs", "int"), ("test_acc", "test accuracy", "pct"), ("speed", "images/s", "int"),
        ("speed_ratio", f"speed / {BASE}'s", "x"), ("seconds", "training time", "s"),
    ]  # fmt: skip
    result = {"epochs": epochs, "reductions": list(reductions), "studied": studied,
              "class_spread_by_block": studies, "runs": arms}  # fmt: skip
    return conclude("se", CLAIM, setup, findings, columns, rows, plot(result), **result)


def _measure(run_dirs: dict[str, str], setup: Setup) -> dict[str, dict[str, Any]]:
    """MACs (one image) and images/s (``SPEED_REPEATS`` times) of each network, from one of its runs."""
    models = {name: load_run(d) for name, d in run_dirs.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, d in run_dirs.items():
        config = read_config(d)
        size = tuple(config.data.input_size)
        out[name] = {
            "input_size": size,
            "macs": summarize(config.model, size, num_classes=config.num_classes, **config.model_kwargs)[
                "macs"
            ],
        }
    speeds: dict[str, list[float]] = {name: [] for name in models}
    setup.say(f"images per second of {', '.join(models)}, {SPEED_REPEATS} times each")
    for _ in range(SPEED_REPEATS):  # the arms in turn, so that a change in the machine's load hits all
        for name, model in models.items():
            seconds = 0.0 if setup.quick else 1.0
            speeds[name].append(inference_speed(model, out[name]["input_size"], min_seconds=seconds))
    for name in models:
        out[name]["speed"] = spread(speeds[name])
    return out


def _excitations(run_dirs: list[str], setup: Setup) -> list[dict[str, Any]]:
    """The class spread of every SE block (shallow to deep) of each seed's network."""
    setup.say(f"SE excitations per class of {len(run_dirs)} runs")
    return [
        {"seed": seed, "class_spread": [block["class_spread"] for block in se_study(d)["blocks"]]}
        for seed, d in zip(setup.seeds, run_dirs, strict=True)
    ]


def plot(r: dict[str, Any]) -> Any:
    """Accuracy, costs and speed against r (resnet20 as the band), and class spread by SE block."""
    plt = pyplot()

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    arms = r["runs"]
    base = arms[BASE]
    se = [a for name, a in arms.items() if name != BASE]
    rs = [a["reduction"] for a in se]

    def log_r(ax: Any) -> None:
        ax.set_xscale("log")
        ax.set_xticks(rs, [str(x) for x in rs])
        ax.minorticks_off()
        ax.set_xlabel("reduction r")

    def against_r(ax: Any, key: str, scale: float, label: str, bars: str) -> None:
        mean = [scale * a[key]["mean"] for a in se]
        low = [m - scale * a[key]["min"] for m, a in zip(mean, se, strict=True)]
        high = [scale * a[key]["max"] - m for m, a in zip(mean, se, strict=True)]
        ax.errorbar(rs, mean, yerr=[low, high], fmt="o-", capsize=4, label=f"SE, {bars}")
        ax.axhspan(scale * base[key]["min"], scale * base[key]["max"], color="gray", alpha=0.3, label=BASE)
        ax.axhline(scale * base[key]["mean"], color="gray")
        log_r(ax)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)

    against_r(axes[0, 0], "test_acc", 100, "test accuracy (%)", "range over seeds")
    ax = axes[0, 1]
    ax.plot(rs, [100 * a["extra_params"] for a in se], "o-", label="parameters")
    ax.plot(rs, [100 * a["extra_macs"] for a in se], "s-", label="MACs")
    ax.axhline(100 * MAX_EXTRA_PARAMS, ls=":", color="C0", label="parameters' bound")
    ax.axhline(100 * MAX_EXTRA_MACS, ls=":", color="C1", label="MACs' bound")
    log_r(ax)
    ax.set_ylabel(f"extra over {BASE} (%)")
    ax.legend(fontsize=8)
    against_r(
        axes[1, 0],
        "speed",
        1,
        f"images per second (as eval runs it, batch {SPEED_BATCH_SIZE})",
        f"range over {SPEED_REPEATS} timings",
    )
    ax = axes[1, 1]
    for study in r["class_spread_by_block"]:
        spreads = study["class_spread"]
        ax.plot(range(1, len(spreads) + 1), spreads, "o-", label=f"seed {study['seed']}")
    ax.set(xlabel="SE block (shallow to deep)", ylabel="std over classes of the mean gate",
           title=f"{r['studied']}: class-specificity by depth")  # fmt: skip
    ax.legend(fontsize=8)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"{BASE} with and without SE, {r['epochs']} epochs, bars from lowest to highest", fontsize=10
    )
    return fig
