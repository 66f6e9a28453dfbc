"""Initialization (He, Zhang, Ren and Sun, "Delving Deep into Rectifiers", ICCV 2015; used by the
ResNet paper, CVPR 2016): weights drawn with variance 2/fan keep the scale of a ReLU network's signal
from layer to layer, where a fixed small variance such as N(0, 0.01) shrinks it at every layer. The
course adds that in a residual block, where x and F(x) are added, a poor initialization makes the sum
grow, and that He's suits it.

The registered CIFAR ResNets put BatchNorm after every conv, and BatchNorm rescales each layer's output
to unit variance whatever the weights: there the initialization barely sets the signal's scale. So the
measured networks are the plain and residual CIFAR twins *without* BatchNorm (``norm="none"``), under
He's normal initialization (fan-out, as the ResNet paper), PyTorch's layer defaults and N(0, 0.01)
(``weight_init``); the He networks with BatchNorm are measured at initialization as a control.

Two measurements. At initialization, on one batch of training images at their own size: the standard
deviation of the activations after the stem and after every block, and the norm of the loss's gradient
with respect to each of those activations (the gradient entering the next block), once per seed (the
draw of the weights). Then a short training of every network of the smaller depths, to say which of
them trains at all. What differs from the papers: a budget of two epochs of digits shrunk to 16x16,
at a rate that networks without BatchNorm can take; a network "trains" when its test accuracy ends above
three times chance.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load
from ..errors import CnnlabError
from ..models import create_model
from ..plots import pyplot
from .arms import Setup, comma_separated, conclude, train_arm
from .claims import Spread, all_of, cell, finding, higher, lower, no_worse, show, spread
from .degradation import twin_names
from .gradients import probe_batch

CLAIM = (
    "He initialization suits deep ReLU and residual networks: under a poor initialization the signal "
    "of a network without BatchNorm vanishes, or x + F(x) grows, and the network does not train."
)
HELP = (
    "plain and residual nets without BatchNorm under three initializations: signal scale, and do they train?"
)
INITS = {"he": "He normal (fan-out)", "torch": "PyTorch's default", "normal": "N(0, 0.01)"}
DEPTHS = (20, 56, 110)  # measured at initialization
TRAIN_DEPTHS = (20, 56)  # trained
PROBE_IMAGES = 32  # at least 100k activations per block for each std: plenty, and resnet110 stays cheap
# Without BatchNorm none of these networks left chance level in one epoch at the recipe's 0.1 (batch 128),
# nor at 0.01; at batches of 32, 0.05 without warm-up takes plain20 under He to ~55% in two epochs (0.1
# and 0.4 stayed at chance, 0.02 barely moved). 16x16 digits cost a third of 28x28.
TRAINING = {"image_size": 16, "batch_size": 32, "lr": 0.05, "warmup_epochs": 0.0}
# Two epochs of 16x16 mnist5k at batch 32 without BatchNorm took 7 s at a depth of 20 and 20 s at 56 on
# the 2 cores, lightly shared: 36 runs take ~7 minutes (resnet56 under He diverges in its first steps),
# and the measurements at initialization 16 s.
EPOCHS = 2
TRAINS = 0.3  # a run trains when its test accuracy ends above three times chance
VANISHED = 1e-3  # the last block's activation std below this fraction of the stem's: the signal is gone


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--depths", default=_text(DEPTHS), help=f"depths measured at initialization (default {_text(DEPTHS)})"
    )
    p.add_argument(
        "--train-depths",
        default=_text(TRAIN_DEPTHS),
        help=f"depths trained, among --depths (default {_text(TRAIN_DEPTHS)})",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "depths": _parse(args.depths, "--depths"),
        "train_depths": _parse(args.train_depths, "--train-depths"),
    }


def _text(depths: tuple[int, ...]) -> str:
    return ",".join(map(str, depths))


def _parse(text: str, flag: str) -> list[int]:
    return comma_separated(text, flag, int, "depths", "20,56")


def signal(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """The std of the activations after the stem and after every block of a CIFAR ResNet, and the norm
    of the loss's gradient with respect to each of them, as the first training step sees them."""
    points = [model.maxpool, *(block for stage in model.stages for block in stage)]
    stds, grads = [0.0] * len(points), [0.0] * len(points)

    def recorder(i: int) -> Any:
        def record(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            stds[i] = out.detach().std().item()
            out.register_hook(lambda g: grads.__setitem__(i, g.norm().item()))

        return record

    handles = [p.register_forward_hook(recorder(i)) for i, p in enumerate(points)]
    try:
        F.cross_entropy(model.train()(images), labels).backward()
    finally:
        for h in handles:
            h.remove()
    return {"activation_std": stds, "gradient_norm": grads}


def ratios(measured: dict[str, list[float]]) -> tuple[float, float]:
    """(last block's activation std over the stem's, gradient norm at the stem over the last block's);
    a gradient that underflows to zero at the last block reaches nothing: 0."""
    std, grad = measured["activation_std"], measured["gradient_norm"]
    return std[-1] / std[0], grad[0] / grad[-1] if grad[-1] > 0 else 0.0


def at_init(setup: Setup, twins: list[tuple[int, str, str]]) -> dict[str, dict[str, Any]]:
    """Every network of ``twins`` under every initialization without BatchNorm, and under He with it,
    measured by ``signal`` once per seed (the weights' draw) on one fixed batch."""
    data = load(setup.data, root=setup.data_root)
    images, labels = probe_batch(data, PROBE_IMAGES)
    arms: dict[str, dict[str, Any]] = {}
    for depth, plain, residual in twins:
        for kind, model in (("plain", plain), ("residual", residual)):
            for init, norm in [*((i, "none") for i in INITS), ("he", "batch")]:
                arm = f"{model}-{init}" + ("-bn" if norm == "batch" else "")
                setup.say(f"{arm}: signal at initialization")
                per_seed = []
                for seed in setup.seeds:
                    torch.manual_seed(seed)
                    net = create_model(
                        model,
                        num_classes=data.num_classes,
                        in_chans=data.in_chans,
                        norm=norm,
                        weight_init=init,
                    )
                    per_seed.append(signal(net, images, labels))
                act, grad = zip(*(ratios(m) for m in per_seed), strict=True)
                arms[arm] = {
                    "model": model, "kind": kind, "depth": depth, "init": init, "norm": norm,
                    "per_seed": per_seed, "activation_ratio": spread(act), "gradient_ratio": spread(grad),
                }  # fmt: skip
    return arms


def train_seeds(setup: Setup, arm: str, model: str, epochs: int, **config: Any) -> list[float | None]:
    """The final test accuracy of each seed, None where the loss became infinite or NaN: one seed at a
    time, so that a seed that diverges loses nothing of the others."""
    accuracies: list[float | None] = []
    for seed in setup.seeds:
        try:
            result = train_arm(dataclasses.replace(setup, seeds=(seed,)), arm, model, epochs, **config)
            accuracies.append(result["test_acc"]["values"][0])
        except CnnlabError as e:
            if not str(e).startswith("training diverged"):  # the trainer's message for a non-finite loss
                raise
            setup.say(f"{arm}: seed {seed} diverged")
            accuracies.append(None)
    return accuracies


def trains(accuracy: float | None) -> bool:
    return accuracy is not None and accuracy > TRAINS


def judge(ratio: dict[str, Spread], trained: dict[str, Spread], depths: list[int]) -> list[dict[str, str]]:
    """The claim's parts from each arm's last/stem activation std ratio (arms named MODEL-INIT, without
    BatchNorm) and, per initialization, how many of the trained networks trained, per seed."""
    d0, d1 = depths[0], depths[-1]
    plain, res = f"plain{d1}", f"resnet{d1}"
    r = ratio

    def vs(a: str, b: str) -> str:
        return f"last/stem activation std {cell(r[a], 'sci')} against {cell(r[b], 'sci')}"

    findings = [
        finding(
            f"under He, {plain}'s signal keeps more of its scale to the last block than under {INITS[i]}",
            higher(r[f"{plain}-he"], r[f"{plain}-{i}"]),
            vs(f"{plain}-he", f"{plain}-{i}"),
        )
        for i in ("torch", "normal")
    ]
    findings += [
        finding(
            f"under N(0, 0.01), {plain}'s signal vanishes: "
            f"its last block's std is below {VANISHED:g} of the stem's",
            lower(r[f"{plain}-normal"], VANISHED),
            f"last/stem activation std {cell(r[f'{plain}-normal'], 'sci')}",
        ),
        finding(
            f"without BatchNorm, x + F(x) grows with depth under He: "
            f"{res}'s last/stem std above resnet{d0}'s",
            higher(r[f"{res}-he"], r[f"resnet{d0}-he"]),
            vs(f"{res}-he", f"resnet{d0}-he"),
        ),
        finding(
            f"He keeps x + F(x) of {res} no larger than {INITS['torch']} and N(0, 0.01) do",
            all_of([no_worse(r[f"{res}-{i}"], r[f"{res}-he"]) for i in ("torch", "normal")]),
            "last/stem activation std under "
            + ", ".join(f"{INITS[i]} {cell(r[f'{res}-{i}'], 'sci')}" for i in INITS),
        ),
    ]
    findings += [
        finding(
            f"He trains at least as many of the networks as {INITS[i]}",
            no_worse(trained["he"], trained[i]),
            f"networks that train, per seed: {show(trained['he'], digits=1)} "
            f"against {show(trained[i], digits=1)}",
        )
        for i in ("torch", "normal")
    ]
    return findings


def run(
    setup: Setup,
    depths: list[int] | tuple[int, ...] = DEPTHS,
    train_depths: list[int] | tuple[int, ...] = TRAIN_DEPTHS,
) -> dict[str, Any]:
    """Measure every network at initialization, train those of ``train_depths`` over the seeds into
    ``OUT/runs/MODEL-INIT``; write init.json and init.png."""
    twins = twin_names(list(depths))
    if not set(train_depths) <= set(depths):
        raise CnnlabError(
            f"--train-depths must be among --depths ({_text(tuple(depths))}); got {list(train_depths)}"
        )
    epochs = setup.budget(EPOCHS)
    training = {k: v for k, v in TRAINING.items() if k not in setup.options}  # --lr, --batch-size win
    if setup.quick:  # its subset is a store packed at 28x28, which no loader resizes
        training.pop("image_size")
    # N(0, 0.01) takes a plain net's activations below 1e-38, where the CPU's subnormal arithmetic is
    # many times slower; flushed to zero, they read as vanished just the same.
    torch.set_flush_denormal(True)
    try:
        runs = at_init(setup, twins)
        for name, arm in runs.items():
            if arm["norm"] == "none" and arm["depth"] in train_depths:
                kwargs = {"norm": "none", "weight_init": arm["init"]}
                arm["test_acc"] = train_seeds(
                    setup, name, arm["model"], epochs, model_kwargs=kwargs, **training
                )
                arm["trained"] = [trains(a) for a in arm["test_acc"]]
    finally:
        torch.set_flush_denormal(False)
    tried = [a for a in runs.values() if "trained" in a]
    trained = {
        i: spread(sum(a["trained"][s] for a in tried if a["init"] == i) for s in range(len(setup.seeds)))
        for i in INITS
    }
    ratio = {name: a["activation_ratio"] for name, a in runs.items()}
    rows = [_row(name, a) for name, a in runs.items()]
    columns = [
        ("arm", "arm", "int"), ("activation_ratio", "activation std, last block / stem", "sci"),
        ("gradient_ratio", "gradient norm, stem / last block", "sci"),
        ("test_acc", f"test accuracy after {_epochs(epochs)}", "pct"), ("trained", "seeds that train", "int"),
    ]  # fmt: skip
    result = {
        "epochs": epochs, "depths": list(depths), "train_depths": list(train_depths),
        "training": training, "trains_above": TRAINS, "trained_per_seed": trained, "runs": runs,
    }  # fmt: skip
    findings = judge(ratio, trained, list(depths))
    return conclude("init", CLAIM, setup, findings, columns, rows, plot(result), **result)


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def _row(name: str, arm: dict[str, Any]) -> dict[str, Any]:
    row = {k: arm[k] for k in ("activation_ratio", "gradient_ratio")}
    if "trained" in arm:
        finite = [a for a in arm["test_acc"] if a is not None]
        diverged = len(arm["test_acc"]) - len(finite)
        row["test_acc"] = spread(finite) if finite else None
        row["trained"] = f"{sum(arm['trained'])}/{len(arm['trained'])}" + (
            f" ({diverged} diverged)" if diverged else ""
        )
    return {"arm": name, **row}


FLOOR = 1e-30  # where the log axes draw what underflowed to zero


def plot(r: dict[str, Any]) -> Any:
    """Activation std and gradient norm after the stem and each block (geometric mean over seeds), plain
    and residual apart; and the grid of which trained networks train."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    fig = plt.figure(figsize=(16, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=(1, 1, 0.75))
    colors = {"he": "C0", "torch": "C1", "normal": "C2", "he-bn": "0.55"}
    styles = dict(zip(r["depths"], ("-", "--", ":", "-."), strict=False))
    for row, key, label in (
        (0, "activation_std", "activation std"),
        (1, "gradient_norm", "norm of the loss gradient"),
    ):
        for col, kind in enumerate(("plain", "residual")):
            ax = fig.add_subplot(grid[row, col])
            for arm in r["runs"].values():
                if arm["kind"] != kind:
                    continue
                per_block = zip(*(m[key] for m in arm["per_seed"]), strict=True)
                mean = [statistics.geometric_mean(max(v, FLOOR) for v in vs) for vs in per_block]
                color = colors[arm["init"] + ("-bn" if arm["norm"] == "batch" else "")]
                ax.plot(range(len(mean)), mean, styles.get(arm["depth"], "-"), color=color, lw=1.5)
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xlabel("after block (0: the stem)")
            ax.set_ylabel(label)
            ax.set_title(
                f"{kind} networks at initialization, mean of {len(arm['per_seed'])} seeds", fontsize=10
            )
    handles = [Line2D([], [], color=c, label=INITS.get(i, "He with BatchNorm")) for i, c in colors.items()]
    handles += [Line2D([], [], color="k", ls=s, label=f"depth {d}") for d, s in styles.items()]
    fig.axes[0].legend(handles=handles, fontsize=8, title=f"zero drawn at {FLOOR:g}", title_fontsize=8)
    _trained_grid(fig.add_subplot(grid[:, 2]), r)
    return fig


def _trained_grid(ax: Any, r: dict[str, Any]) -> None:
    tried = [a for a in r["runs"].values() if "trained" in a]
    models = list(dict.fromkeys(a["model"] for a in tried))
    inits = list(INITS)
    share = [[0.0] * len(inits) for _ in models]
    for a in tried:
        i, j = models.index(a["model"]), inits.index(a["init"])
        share[i][j] = sum(a["trained"]) / len(a["trained"])
        finite = [x for x in a["test_acc"] if x is not None]
        text = f"{sum(a['trained'])}/{len(a['trained'])} train"
        text += f"\n{100 * statistics.fmean(finite):.0f}% test acc." if finite else ""
        text += f"\n{len(a['test_acc']) - len(finite)} diverged" if len(finite) < len(a["test_acc"]) else ""
        ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.imshow(share, cmap="Greens", vmin=0, vmax=1.6, aspect="auto")
    ax.set_xticks(range(len(inits)), [INITS[i] for i in inits], fontsize=8)
    ax.set_yticks(range(len(models)), [f"{m}, no BN" for m in models])
    ax.set_title(
        f"which train: test accuracy above {100 * r['trains_above']:.0f}% after {_epochs(r['epochs'])}",
        fontsize=10,
    )
