"""Local Response Normalization (Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", 2012, Sec. 3.3): after the ReLU of conv1 and conv2, each activation is
divided by (k + alpha/n * the sum of squares of the n neighbouring channels at its position)^beta, so
that a strongly excited neuron damps its neighbours (the paper credits it with 1.4 points of top-1
error). The course adds that BatchNorm (Ioffe and Szegedy, 2015) does the job today.

Three arms of the torchvision-layout ``alexnet``, trained with its recipe (He initialization, AdamW,
64x64 digits): LRN after the ReLU of conv1 and conv2, BatchNorm there instead, and neither. Besides the
accuracy, the statistic LRN is meant to tame is measured on every trained model: at the output of
block 1 and block 2 (conv -> ReLU -> norm), at each position, the largest channel activation over the
mean over channels, averaged over the positions and the test images (``peak_to_mean``); and the same
before the norm layer, to show what the layer itself does.

What differs from the paper: the network is AlexNet at half width (32-96-192-128-128 filters, fc6
and fc7 of 512 units, 3.2M parameters). With torchvision's widths and fc6/fc7 at 512 an epoch took
about 27 s here (on a loaded machine), too slow for nine trainings that converge; half width took
about 7 s and was as accurate by epoch 6 (93%). The LRN window still spans 5 of the 32 or 96 maps.
A budget of minutes on the embedded mnist5k digits, not 90 epochs of ImageNet. BatchNorm sits where
LRN was (after the ReLU), not before it as in Ioffe and Szegedy, so that the arms differ in the
normalization alone. The paper fed LRN unnormalized pixels (only the mean image subtracted); cnnlab
normalizes its inputs, so the activations, and with them LRN's sum of squares, are far smaller than
the paper's. BatchNorm's output is signed, so the ratio is taken on absolute values (the same numbers
for the non-negative outputs of ReLU and LRN); positions where every channel is zero have no peak and
are left out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import load, resize
from ..data.augment import Normalize
from ..layers import LocalResponseNorm
from ..plots import pyplot
from ..rundir import load_run, read_config
from .arms import Setup, conclude, train_arm
from .claims import Spread, all_of, finding, higher, lower, no_worse, show, spread

CLAIM = (
    "Local Response Normalization tames strongly excited neurons (a lower peak-to-mean activation "
    "across channels), and BatchNorm, which replaced it, trains AlexNet at least as well."
)
HELP = "AlexNet with LRN, with BatchNorm and with neither: accuracy and the peak-to-mean activation"
# About 4 s an epoch for each arm at half width (7 s measured on a loaded machine; LRN's backward
# pass is the slowest), so three arms of three seeds take about 9 x 12 x 4 s = 7-8 minutes on 2 cores.
# "neither", the slowest to learn, was at 95.6% from epoch 8 of 15.
EPOCHS = 12
WIDTHS = (32, 96, 192, 128, 128)
HIDDEN = 512
ARMS = {"lrn": {"lrn": True}, "bn": {"bn": True}, "neither": {}}
BLOCKS = (1, 2)
NORMS = (LocalResponseNorm, nn.BatchNorm2d)


def peak_to_mean(x: torch.Tensor) -> tuple[float, int]:
    """The sum over positions of max over channels of |x| / mean over channels of |x|, and the number
    of positions counted, for activations ``x`` (N, C, H, W): positions where all channels are zero
    are left out."""
    a = x.abs()
    mean = a.mean(1)
    active = mean > 0
    return (a.amax(1)[active] / mean[active]).sum().item(), int(active.sum())


@torch.no_grad()
def block_ratios(
    features: nn.Sequential, images: torch.Tensor, batch_size: int = 250
) -> dict[str, list[float]]:
    """``peak_to_mean`` averaged over all positions and images, at the output of blocks 1 and 2 of an
    AlexNet's ``features`` ("after": conv -> ReLU -> norm) and at the input of their norm layer
    ("before": conv -> ReLU); without a norm layer the two are the same activations."""
    totals = {key: torch.zeros(len(BLOCKS), 2, dtype=torch.float64) for key in ("before", "after")}
    for x in images.split(batch_size):
        seen: dict[str, list[torch.Tensor]] = {"before": [], "after": []}
        for layer in features:
            if isinstance(layer, nn.Conv2d) and len(seen["before"]) == len(BLOCKS):
                break
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                seen["before"].append(x)
                seen["after"].append(x)
            elif isinstance(layer, NORMS):
                seen["after"][-1] = x
        for key, outputs in seen.items():
            totals[key] += torch.tensor([peak_to_mean(out) for out in outputs], dtype=torch.float64)
    return {key: (t[:, 0] / t[:, 1]).tolist() for key, t in totals.items()}


def eval_images(run_dir: str) -> torch.Tensor:
    """The test images of a run's data, resized as the trainer resized them (``run_dataset`` reloads
    a packed store at the run's side, which the --quick store, packed at 28x28, refuses)."""
    config = read_config(run_dir)
    data = load(config.data.source, root=config.train.get("data_root"), cache=True)
    return resize(data, config.data.input_size[-1]).test_images


def measure(run_dir: str, images: torch.Tensor) -> dict[str, list[float]]:
    """``block_ratios`` of a trained run over ``images`` (uint8, as ``eval_images`` gives them)."""
    model = load_run(run_dir)
    cfg = model.data_config  # type: ignore[attr-defined]
    return block_ratios(model.features, Normalize(tuple(cfg.mean), tuple(cfg.std))(images))  # type: ignore[arg-type]


def change(after: list[Spread], before: list[Spread]) -> str:
    """The mean relative change of the ratio per block, seed by seed: how much the layer itself does,
    which the seed-to-seed spread of the ratio can hide."""
    parts = []
    for n, a, b in zip(BLOCKS, after, before, strict=True):
        rel = [x / y - 1 for x, y in zip(a["values"], b["values"], strict=True)]
        parts.append(f"block {n} {100 * sum(rel) / len(rel):+.3g}%")
    return "the norm layer changes it by " + ", ".join(parts) + " (mean over seeds)"


def judge(acc: dict[str, Spread], ratio: dict[str, dict[str, list[Spread]]]) -> list[dict[str, str]]:
    """``acc`` per arm; ``ratio[arm]["before" | "after"]`` the peak-to-mean ratio per block."""
    lrn, neither = ratio["lrn"], ratio["neither"]

    def per_block(a: list[Spread], b: list[Spread]) -> str:
        return "; ".join(
            f"block {n}: {show(x)} against {show(y)}" for n, x, y in zip(BLOCKS, a, b, strict=True)
        )

    return [
        finding(
            "LRN lowers the peak-to-mean ratio of the activations it normalizes (its output against input)",
            all_of([lower(a, b) for a, b in zip(lrn["after"], lrn["before"], strict=True)]),
            per_block(lrn["after"], lrn["before"]) + "; " + change(lrn["after"], lrn["before"]),
        ),
        finding(
            "the LRN network's normalized activations have a lower peak-to-mean ratio than those of the "
            "network without normalization",
            all_of([lower(a, b) for a, b in zip(lrn["after"], neither["after"], strict=True)]),
            per_block(lrn["after"], neither["after"]),
        ),
        finding(
            "AlexNet with BatchNorm is at least as accurate as with LRN",
            no_worse(acc["bn"], acc["lrn"]),
            f"{show(acc['bn'], 100, unit='%')} against {show(acc['lrn'], 100, unit='%')}",
        ),
        finding(
            "AlexNet with LRN is more accurate than without normalization",
            higher(acc["lrn"], acc["neither"]),
            f"{show(acc['lrn'], 100, unit='%')} against {show(acc['neither'], 100, unit='%')}",
        ),
    ]


def run(setup: Setup) -> dict[str, Any]:
    """Train the three arms over the seeds into ``OUT/runs/ARM``, measure each trained model; write
    lrn.json and lrn.png."""
    epochs = setup.budget(EPOCHS)
    arms = {
        name: train_arm(
            setup, name, "alexnet", epochs, model_kwargs={"widths": list(WIDTHS), "hidden": HIDDEN, **kw}
        )
        for name, kw in ARMS.items()
    }
    images = eval_images(arms["lrn"]["run_dirs"][0])  # every arm trained on the same images
    ratio: dict[str, dict[str, list[Spread]]] = {}
    for name, arm in arms.items():
        measured = [measure(run_dir, images) for run_dir in arm["run_dirs"]]
        ratio[name] = {
            key: [spread(m[key][b] for m in measured) for b in range(len(BLOCKS))]
            for key in ("before", "after")
        }
    acc = {name: arm["test_acc"] for name, arm in arms.items()}
    rows = [
        {"arm": name, "params": arm["params"], "test_acc": arm["test_acc"], "train_loss": arm["train_loss"],
         **{f"{key}{b}": ratio[name][key][i] for key in ("before", "after") for i, b in enumerate(BLOCKS)},
         "seconds": arm["train_time_s"]}
        for name, arm in arms.items()
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("test_acc", "test accuracy", "pct"),
        ("train_loss", "final training loss", "num"),
        ("after1", "peak/mean block 1", "x"), ("after2", "peak/mean block 2", "x"),
        ("before1", "block 1 before its norm", "x"), ("before2", "block 2 before its norm", "x"),
        ("seconds", "training time", "s"),
    ]  # fmt: skip
    result = {"epochs": epochs, "widths": list(WIDTHS), "hidden": HIDDEN, "ratio": ratio, "runs": arms}
    return conclude("lrn", CLAIM, setup, judge(acc, ratio), columns, rows, plot(result), **result)


def plot(r: dict[str, Any]) -> Any:
    """Test accuracy per epoch (mean over seeds) per arm; the peak-to-mean ratio per arm and block,
    after the norm (solid) and before it (hatched)."""
    plt = pyplot()
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    colors = dict(zip(ARMS, plt.cm.tab10.colors, strict=False))
    for name, arm in r["runs"].items():
        per_seed = arm["curves"]["test_acc"]
        mean = [100 * sum(v) / len(v) for v in zip(*per_seed, strict=True)]
        curves.plot(range(1, len(mean) + 1), mean, "-o", color=colors[name], label=name)
    seeds = len(next(iter(r["runs"].values()))["run_dirs"])
    curves.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"AlexNet, mean of {seeds} seeds")
    curves.grid(True, alpha=0.3)
    curves.legend()
    # "neither" has no norm layer: its one bar is both
    slots = [(name, key) for name in ARMS for key in ("after", "before") if ARMS[name] or key == "after"]
    width = 0.8 / len(slots)
    for j, (name, key) in enumerate(slots):
        s = r["ratio"][name][key]
        label = f"{name}, {key} the norm layer" if ARMS[name] else f"{name} (no norm layer)"
        bars.bar(
            [b - 0.4 + (j + 0.5) * width for b in BLOCKS], [x["mean"] for x in s], width,
            yerr=[x["std"] for x in s], color=colors[name], hatch="//" if key == "before" else None,
            alpha=0.5 if key == "before" else 1.0, label=label,
        )  # fmt: skip
    bars.set_xticks(BLOCKS, [f"block {b}" for b in BLOCKS])
    bars.set(ylabel="max / mean over channels, per position", title="peak-to-mean activation (test images)")
    bars.set_ylim(0, 1.3 * bars.get_ylim()[1])  # room for the legend above the bars
    bars.legend(fontsize=8, ncols=2, loc="upper center")
    return fig
