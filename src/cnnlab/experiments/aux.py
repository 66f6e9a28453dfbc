"""GoogLeNet's auxiliary classifiers (Szegedy et al., "Going Deeper with Convolutions", 2015, Sec. 5):
two small classifiers on the outputs of Inception 4a and 4d add their losses, weighted 0.3, while
training, to "increase the gradient signal that gets propagated back" to the lower layers.

The same GoogLeNet trains with and without the heads. Before training and after every epoch, on one
fixed probe batch, we take the gradient that reaches the early Inception modules (3a and 3b, below
both heads), in the aux arm split into the part from the main loss and the part from the weighted
auxiliary losses; at the end each head classifies the test set on its own. What differs from the
paper: mnist5k digits at 32x32 (not ImageNet at 224), a budget of minutes, and torchvision's GoogLeNet
with BatchNorm, which the paper did not have. The authors later found the heads did not speed up early
training and called them regularizers ("Rethinking the Inception Architecture", 2016, Sec. 4).
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

import torch
import torch.nn.functional as F

from ..data import load, source_kind
from ..data.augment import Normalize, batches
from ..data.base import Dataset
from ..loss import AUX_WEIGHT
from ..models import recipe_of
from ..plots import pyplot
from ..rundir import load_run
from .arms import Setup, conclude, train_arm
from .claims import Spread, finding, higher, show, spread
from .gradients import TOTAL, gradient_observer, probe_size, seed_band

CLAIM = (
    "GoogLeNet's auxiliary classifiers inject gradient into the lower layers: with them, more gradient "
    "reaches the early Inception modules, and the final accuracy is higher."
)
HELP = "GoogLeNet with and without its auxiliary heads: gradient at Inception 3a/3b, each head's accuracy"
MODEL = "googlenet"
EARLY = ("inception3a", "inception3b")
EVAL_BATCH = 500
HEAD_INPUT = {"aux1": "inception4a", "aux2": "inception4d"}  # where each auxiliary head reads
ARMS = {"aux": {}, "no-aux": {"aux_logits": False}}  # arm: model_kwargs
IMAGE_SIZE = 32  # the recipe's 64 takes ~15 s an epoch; 32 leaves Inception 3 a 4x4 map, 4 a 2x2 one
# ~12 s an epoch at 32 px on mnist5k on 2 cores (measured 1.8x resnet20's), ~0.5 s a probe measurement,
# ~5 s a run to set up and to evaluate its heads: six trainings of 8 epochs in about 10-11 minutes.
EPOCHS = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-size",
        type=int,
        default=IMAGE_SIZE,
        help=f"side the digits are resized to (default {IMAGE_SIZE})",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {"image_size": args.image_size}


def aux_weight() -> float:
    """Each auxiliary loss's weight as the trainer takes it: the recipe's, else the common one."""
    weight = recipe_of(MODEL).aux_weight
    return AUX_WEIGHT if weight is None else weight


def loss_parts(
    outputs: torch.Tensor | tuple[torch.Tensor, ...], labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The training loss (without label smoothing) in its main part and, with the heads, the part of
    the auxiliary losses, weighted as the trainer weighs them."""
    main, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
    parts = {"main": F.cross_entropy(main, labels)}
    if aux:
        parts["aux"] = aux_weight() * sum(F.cross_entropy(logits, labels) for logits in aux)
    return parts


def early_norms(observed: list[dict[str, Any]], part: str) -> list[float]:
    """Per epoch, the norm of ``part``'s gradient over all parameters of Inception 3a and 3b together."""
    return [math.hypot(*(o[part][layer] for layer in EARLY)) for o in observed]


def aux_shares(early: dict[str, list[list[float]]]) -> list[list[float]]:
    """Per seed and epoch, the auxiliary losses' part of the gradient's magnitude at 3a/3b:
    |aux| / (|main| + |aux|), between 0 and 1 however the two parts point."""
    return [
        [a / (m + a) for m, a in zip(main, aux, strict=True)]
        for main, aux in zip(early["main"], early["aux"], strict=True)
    ]


@torch.no_grad()
def head_accuracies(run_dir: str, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Test accuracy of each head of a trained GoogLeNet, in eval mode, in one pass. The auxiliary
    heads do not run in eval mode, so forward hooks keep the maps they read and the heads are applied
    to those."""
    model = load_run(run_dir)
    heads = HEAD_INPUT if model.aux_logits else {}
    maps: dict[str, torch.Tensor] = {}
    for layer in heads.values():
        model.get_submodule(layer).register_forward_hook(
            lambda _module, _inputs, output, layer=layer: maps.update({layer: output})
        )
    normalize = Normalize(model.data_config.mean, model.data_config.std)
    correct = dict.fromkeys(["main", *heads], 0)
    for x, y in batches(images, labels, EVAL_BATCH):
        logits = {"main": model(normalize(x))}
        logits |= {name: model.get_submodule(name)(maps[layer]) for name, layer in heads.items()}
        for name, out in logits.items():
            correct[name] += (out.argmax(1) == y).sum().item()
    return {name: hits / len(labels) for name, hits in correct.items()}


def training_data(setup: Setup, image_size: int) -> tuple[Dataset, int]:
    """The images as the arms train on them, and their side: resized to ``image_size``, except a
    packed store (the --quick digits among them), which trains at the size it was packed at."""
    if source_kind(setup.data) != "store":
        return load(setup.data, root=setup.data_root, image_size=image_size, cache=True), image_size
    data = load(setup.data, root=setup.data_root, cache=True)
    side = min(data.image_size)
    if side != image_size:
        setup.say(f"{setup.data} is a store packed at {side}x{side}: the arms train at that size")
    return data, side


def judge(early: dict[str, Spread], acc: dict[str, Spread], share: Spread) -> list[dict[str, str]]:
    """The two halves of the claim, on the gradient at Inception 3a/3b (its geometric mean over the
    epochs, initialization included) and the final test accuracy, each with the heads against without."""
    return [
        finding(
            "with the auxiliary heads, more gradient reaches Inception 3a/3b than without (geometric mean "
            "over the epochs)",
            higher(early["aux"], early["no-aux"]),
            f"gradient norm {show(early['aux'], digits=3)} against {show(early['no-aux'], digits=3)}; the "
            f"auxiliary losses' part is {show(share, 100, 1, '%')} of the magnitude (aux / (main + aux))",
        ),
        finding(
            "with the auxiliary heads, the final test accuracy is higher than without",
            higher(acc["aux"], acc["no-aux"]),
            f"{show(acc['aux'], 100, unit='%')} against {show(acc['no-aux'], 100, unit='%')}",
        ),
    ]


def run(setup: Setup, image_size: int = IMAGE_SIZE) -> dict[str, Any]:
    """Train GoogLeNet with and without its heads over the seeds into ``OUT/runs/ARM``, measuring the
    gradient at Inception 3a/3b on a probe batch; write aux.json and aux.png."""
    epochs = setup.budget(EPOCHS)
    data, image_size = training_data(setup, image_size)
    observe = gradient_observer(data, loss_parts, EARLY, size=probe_size(setup))
    arms: dict[str, dict[str, Any]] = {}
    for arm, kwargs in ARMS.items():
        trained = train_arm(
            setup, arm, MODEL, epochs, observe=observe, model_kwargs=kwargs, image_size=image_size
        )
        parts = [TOTAL, *(p for p in ("main", "aux") if p in trained["observed"][0][0])]
        early = {p: [early_norms(seen, p) for seen in trained["observed"]] for p in parts}
        heads = [head_accuracies(d, data.test_images, data.test_labels) for d in trained["run_dirs"]]
        del trained["observed"]  # kept as ``early``
        arms[arm] = {
            **trained,
            "early": early,
            # Geometric: the norm falls by decades as the weights grow, and every epoch should count.
            "early_mean": spread(statistics.geometric_mean(per_epoch) for per_epoch in early[TOTAL]),
            "heads": {name: spread(h[name] for h in heads) for name in heads[0]},
        }
    share = spread(statistics.fmean(per_epoch) for per_epoch in aux_shares(arms["aux"]["early"]))
    early_mean = {arm: a["early_mean"] for arm, a in arms.items()}
    acc = {arm: a["test_acc"] for arm, a in arms.items()}
    rows = [
        {"arm": arm, "params": a["params"], "test_acc": a["test_acc"], "aux1": a["heads"].get("aux1"),
         "aux2": a["heads"].get("aux2"), "early": a["early_mean"], "share": share if arm == "aux" else None,
         "seconds": a["train_time_s"]}
        for arm, a in arms.items()
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("test_acc", "test accuracy (main)", "pct"),
        ("aux1", "aux1 head", "pct"), ("aux2", "aux2 head", "pct"),
        ("early", "gradient at 3a/3b (geo. mean)", "sci"), ("share", "aux part of it", "pct"),
        ("seconds", "training time", "s"),
    ]  # fmt: skip
    result = {
        "epochs": epochs,
        "image_size": image_size,
        "aux_weight": aux_weight(),
        "aux_share": share,
        "runs": arms,
    }
    return conclude("aux", CLAIM, setup, judge(early_mean, acc, share), columns, rows, plot(result), **result)


def plot(r: dict[str, Any]) -> Any:
    """The gradient at Inception 3a/3b per epoch (mean over seeds, their range shaded), the auxiliary
    part's share of it, and each head's final test accuracy."""
    plt = pyplot()

    fig, (ax_norm, ax_share, ax_acc) = plt.subplots(
        1, 3, figsize=(15, 4.6), layout="constrained", gridspec_kw={"width_ratios": [1.3, 1, 1]}
    )
    runs = r["runs"]
    colors = {"aux": "tab:blue", "no-aux": "tab:orange"}
    lines = {TOTAL: ("-", "all losses"), "main": ("--", "main loss"), "aux": (":", "auxiliary losses")}
    for arm, a in runs.items():
        for part, per_seed in a["early"].items():
            style, what = lines[part]
            mean, low, high = seed_band(per_seed)
            epochs = range(len(mean))
            ax_norm.plot(
                epochs, mean, style, color=colors[arm], lw=2 if part == TOTAL else 1.2, label=f"{arm}: {what}"
            )
            ax_norm.fill_between(epochs, low, high, color=colors[arm], alpha=0.12)
    ax_norm.set(
        xlabel="epoch (0: at initialization)", ylabel="gradient norm at Inception 3a+3b", yscale="log"
    )
    ax_norm.set_title("gradient reaching the early modules (probe batch)", fontsize=10)
    ax_norm.legend(fontsize=8)
    for ax in (ax_norm, ax_share):
        ax.xaxis.get_major_locator().set_params(integer=True)

    mean, low, high = seed_band(
        [[100 * s for s in per_seed] for per_seed in aux_shares(runs["aux"]["early"])]
    )
    ax_share.plot(range(len(mean)), mean, color=colors["aux"], lw=2)
    ax_share.fill_between(range(len(mean)), low, high, color=colors["aux"], alpha=0.15)
    ax_share.set(xlabel="epoch", ylabel="aux / (main + aux), %", ylim=(0, None))
    ax_share.set_title(f"auxiliary losses' part (weight {r['aux_weight']:g} each)", fontsize=10)

    bars = [(f"{arm}\n{head}", s, colors[arm]) for arm, a in runs.items() for head, s in a["heads"].items()]
    x = range(len(bars))
    ax_acc.bar(x, [100 * s["mean"] for _, s, _ in bars], yerr=[100 * s["std"] for _, s, _ in bars],
               color=[c for *_, c in bars], capsize=4)  # fmt: skip
    for i, (_, s, _) in enumerate(bars):
        ax_acc.text(i, 100 * s["mean"] / 2, f"{100 * s['mean']:.1f}%", ha="center", fontsize=8, color="white")
    ax_acc.set_xticks(list(x), [label for label, *_ in bars], fontsize=8)
    ax_acc.set(ylabel="test accuracy (%)", ylim=(0, 100))
    seeds = len(runs["aux"]["run_dirs"])
    ax_acc.set_title(f"each head on its own, eval mode ({seeds} seeds)", fontsize=10)
    fig.suptitle(
        f"GoogLeNet at {r['image_size']}px, {r['epochs']} epoch(s), with and without auxiliary heads",
        fontsize=11,
    )
    return fig
