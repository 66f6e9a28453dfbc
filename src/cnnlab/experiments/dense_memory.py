"""What concatenation costs (Huang, Liu, van der Maaten and Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017; Pleiss et al., "Memory-Efficient Implementation of DenseNets", 2017): a DenseNet
layer passes on every earlier feature map unchanged, where a ResNet adds them into one, so a dense block
holds far more feature maps for the backward pass, and its bottlenecks read ever wider inputs. The
memory-efficient implementation recomputes each layer's concatenation and 1x1 bottleneck in the backward
pass instead of keeping them: less memory, one more forward of those layers.

Nothing trains. For CIFAR DenseNet-BC (k = 12) and CIFAR ResNets of four depths, paired by parameter
count: the activation memory of one training step, counted as the bytes of the tensors autograd saves
for the backward pass (each storage once, the weights not), on one batch of training images; the MACs
of one image (``count_macs``, as ``cnnlab summary``); and, for every DenseNet with and without the
memory-efficient option, the time of one training step (the median of several, as ``cnnlab bench``
times them), once per seed, interleaved so that a slower moment of the machine hits both alike. Memory
and MACs do not depend on the seed. What differs from the papers: the memory is what autograd holds
between the forward and the backward pass, not the allocator's peak, which adds the backward pass's
own temporaries; and fp32 on this machine's device rather than a GPU's. On a CPU the standard form's
larger allocations (over 3 GB for DenseNet-BC-148 at a batch of 64) cost time of their own, which
narrows the gap that the recomputation opens.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.costs import count_macs
from ..analysis.summary import count_params
from ..bench import make_step, time_steps
from ..data import load
from ..errors import CnnlabError
from ..models import create_model, list_models
from ..models.densenet import DenseNet
from ..plots import pyplot
from ..runtime import resolve_device
from .arms import Setup, conclude
from .claims import Spread, all_of, cell, finding, higher, lower, show, spread
from .gradients import probe_batch

CLAIM = (
    "Concatenation preserves signals but costs memory and compute: a DenseNet-BC holds more activations "
    "and spends more MACs per parameter than a ResNet, and its memory-efficient form saves memory at a "
    "cost in time."
)
HELP = "activation memory and MACs of DenseNet-BC against ResNet, and the memory-efficient trade-off"
GROWTH = 12  # the CIFAR DenseNet-BC's k
# DenseNet-BC depths (3 blocks of (L - 4) / 6 layers) paired with the ResNet of about its parameters
# (10 classes): 264k/269k, 486k/464k, 769k/853k, 1.51M/1.73M.
PAIRS = ((52, 20), (76, 32), (100, 56), (148, 110))
BATCH = 64  # the DenseNet paper's CIFAR batch
# Timed training steps per seed and mode, after the warm-up one: densenet_bc_148's standard steps at
# batch 64 ranged 2.7-3.8 s in medians of two, its memory-efficient ones 3.30-3.34 s.
STEPS, WARMUP = 5, 1
# Nothing trains: the budget is the pairs, the batch and the timed steps. Alone on 2 cores at 28x28,
# the counting passes take ~20 s and the timing (3 seeds x 2 modes x 6 steps of each DenseNet: about
# 0.6, 1, 1.6 and 3 s a step) ~4 minutes.


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pairs",
        default=_text(PAIRS),
        help=f"DenseNet-BC:ResNet depth pairs of similar parameters (default {_text(PAIRS)})",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    try:
        pairs = [tuple(int(d) for d in p.split(":")) for p in args.pairs.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 for p in pairs):
        raise CnnlabError(f"--pairs takes DENSE:RESNET depth pairs, e.g. 100:56,148:110; got {args.pairs!r}")
    return {"pairs": pairs}


def _text(pairs: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{d}:{r}" for d, r in pairs)


def saved_bytes(forward: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``forward`` runs: each storage
    once (a view or an in-place result shares its input's), none of ``exclude``'s (the weights, which
    are there whether or not the model trains)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values())


def densenet_bc(depth: int, **kwargs: Any) -> DenseNet:
    """The CIFAR DenseNet-BC of ``depth`` (k = 12), built as ``densenet_bc_100`` is."""
    n = (depth - 4) // 6
    return DenseNet(GROWTH, (n, n, n), 2 * GROWTH, stem="cifar", **kwargs)


def check_pairs(pairs: list[tuple[int, int]]) -> None:
    # The CIFAR ResNets are the depths with a plain twin.
    cifar = sorted(int(m[5:]) for m in list_models() if m.startswith("plain") and m[5:].isdigit())
    for dense, res in pairs:
        if dense < 10 or (dense - 4) % 6 or res not in cifar:
            raise CnnlabError(
                f"a pair is a DenseNet-BC depth 6n+4 (n >= 1) and a CIFAR ResNet depth "
                f"({', '.join(map(str, cifar))}); got {dense}:{res}"
            )


def costs(
    build: Callable[..., nn.Module], images: torch.Tensor, labels: torch.Tensor, **kwargs: Any
) -> dict[str, int]:
    """Parameters, MACs of one image and the bytes saved for the backward pass of one training step of
    ``build(**kwargs)``."""
    with torch.device("meta"):
        macs = count_macs(build(**kwargs), tuple(images.shape[1:]))
    model = build(**kwargs).to(images.device).train()
    saved = saved_bytes(lambda: F.cross_entropy(model(images), labels), model.parameters())
    return {"params": count_params(model), "macs": macs, "activation_bytes": saved}


def step_times(
    depth: int, images: torch.Tensor, labels: torch.Tensor, repeats: int, steps: int, **kwargs: Any
) -> dict[str, Spread]:
    """The median time of a training step of DenseNet-BC-``depth``, with and without the memory-efficient
    option, once per repeat: the two alternate, so that a slower moment of the machine hits both alike."""
    device = images.device
    models = {eff: densenet_bc(depth, memory_efficient=eff, **kwargs).to(device) for eff in (False, True)}
    train = {eff: make_step(model, "train", images, labels, device, None) for eff, model in models.items()}
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for eff, step in train.items():
            times[eff].append(statistics.median(time_steps(step, device, steps, WARMUP, 0.0)))
    return {"step_s": spread(times[False]), "efficient_step_s": spread(times[True])}


def judge(arms: dict[str, dict[str, Any]], pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The claim's parts from each arm's numbers: ``params``, ``macs``, ``activation_bytes`` and, for
    the DenseNets (the first of each pair), ``efficient_bytes``, ``step_s`` and ``efficient_step_s``."""

    def per_param(name: str, key: str) -> float:
        return arms[name][key] / arms[name]["params"]

    def compare(key: str, unit: str) -> dict[str, Any]:
        verdicts = [higher(per_param(d, key), per_param(r, key)) for d, r in pairs]
        evidence = "; ".join(
            f"{d} {per_param(d, key):,.0f} against {r} {per_param(r, key):,.0f}" for d, r in pairs
        )
        return {"verdict": all_of(verdicts), "evidence": f"{unit} per parameter: {evidence}"}

    dense = [d for d, _ in pairs]
    memory = [lower(arms[d]["efficient_bytes"], arms[d]["activation_bytes"]) for d in dense]
    time = [higher(arms[d]["efficient_step_s"], arms[d]["step_s"]) for d in dense]
    saved = "; ".join(
        f"{d} {cell(arms[d]['efficient_bytes'], 'mb')} against {cell(arms[d]['activation_bytes'], 'mb')}"
        for d in dense
    )
    seconds = "; ".join(
        f"{d} {show(arms[d]['efficient_step_s'], digits=3, unit=' s')} against "
        f"{show(arms[d]['step_s'], digits=3, unit=' s')}"
        for d in dense
    )
    return [
        finding(
            "at similar parameters, every DenseNet-BC holds more activation bytes per parameter than its "
            "ResNet",
            **compare("activation_bytes", "bytes saved for backward"),
        ),
        finding(
            "at similar parameters, every DenseNet-BC spends more MACs per parameter than its ResNet",
            **compare("macs", "MACs"),
        ),
        finding(
            "the memory-efficient DenseNet-BC holds less for the backward pass, at every depth",
            all_of(memory),
            saved,
        ),
        finding(
            "the memory-efficient DenseNet-BC takes longer per training step, at every depth",
            all_of(time),
            seconds,
        ),
    ]


def run(setup: Setup, pairs: list[tuple[int, int]] | tuple[tuple[int, int], ...] = PAIRS) -> dict[str, Any]:
    """Count and time every network of ``pairs`` (DenseNet-BC depth, ResNet depth); write
    dense-memory.json and .png."""
    pairs = [tuple(p) for p in pairs]
    check_pairs(pairs)
    batch, steps = (16, 1) if setup.quick else (BATCH, STEPS)  # --quick: the same networks, ~20 s
    data = load(setup.data, root=setup.data_root)
    device = resolve_device("auto")
    images, labels = (t.to(device) for t in probe_batch(data, batch))
    net = {"num_classes": data.num_classes, "in_chans": data.in_chans}
    arms: dict[str, dict[str, Any]] = {}
    names = [(f"densenet_bc_{d}", f"resnet{r}") for d, r in pairs]
    for (dense_depth, res_depth), (dense, res) in zip(pairs, names, strict=True):
        setup.say(f"{dense} and {res}: memory and MACs")
        arms[res] = {
            "family": "ResNet",
            "depth": res_depth,
            **costs(create_model, images, labels, name=res, **net),
        }
        arms[dense] = {
            "family": "DenseNet-BC",
            "depth": dense_depth,
            **costs(densenet_bc, images, labels, depth=dense_depth, **net),
        }
        efficient = costs(densenet_bc, images, labels, depth=dense_depth, memory_efficient=True, **net)
        arms[dense]["efficient_bytes"] = efficient["activation_bytes"]
    for (dense_depth, _), (dense, _) in zip(pairs, names, strict=True):
        setup.say(f"{dense}: training step times, {len(setup.seeds)} repeats")
        arms[dense].update(step_times(dense_depth, images, labels, len(setup.seeds), steps, **net))
    rows = [
        {"arm": name, **a, "bytes_per_param": a["activation_bytes"] / a["params"]} for name, a in arms.items()
    ]
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("macs", "MACs per image", "int"),
        ("activation_bytes", f"saved for backward, batch {batch}", "mb"),
        ("bytes_per_param", "bytes saved per parameter", "int"),
        ("efficient_bytes", "memory-efficient: saved", "mb"), ("step_s", "training step (s)", "num"),
        ("efficient_step_s", "memory-efficient step (s)", "num"),
    ]  # fmt: skip
    result = {
        "batch": batch,
        "input": list(images.shape[1:]),
        "pairs": [list(p) for p in pairs],
        "runs": arms,
    }
    return conclude("dense-memory", CLAIM, setup, judge(arms, names), columns, rows, plot(result), **result)


def plot(r: dict[str, Any]) -> Any:
    """Activation memory against depth and parameters, MACs against parameters, and the memory-efficient
    DenseNets' memory against their step time."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), layout="constrained")
    families = {"ResNet": "C0", "DenseNet-BC": "C3"}
    for family, color in families.items():
        arms = sorted((a for a in r["runs"].values() if a["family"] == family), key=lambda a: a["depth"])
        depth = [a["depth"] for a in arms]
        params = [a["params"] / 1e6 for a in arms]
        mb = [a["activation_bytes"] / 1e6 for a in arms]
        axes[0].plot(depth, mb, "o-", color=color, label=family)
        axes[1].plot(params, mb, "o-", color=color, label=family)
        axes[2].plot(params, [a["macs"] / 1e6 for a in arms], "o-", color=color, label=family)
        if family == "DenseNet-BC":
            efficient = [a["efficient_bytes"] / 1e6 for a in arms]
            axes[0].plot(depth, efficient, "o--", color=color, label=f"{family}, memory-efficient")
            axes[1].plot(params, efficient, "o--", color=color, label=f"{family}, memory-efficient")
            for a in arms:
                x = [a["step_s"]["mean"], a["efficient_step_s"]["mean"]]
                y = [a["activation_bytes"] / 1e6, a["efficient_bytes"] / 1e6]
                axes[3].annotate("", xy=(x[1], y[1]), xytext=(x[0], y[0]), arrowprops={"arrowstyle": "->"})
                axes[3].errorbar(
                    x, y, xerr=[a["step_s"]["std"], a["efficient_step_s"]["std"]], fmt="none", color=color
                )
                axes[3].plot(x[0], y[0], "o", color=color)
                axes[3].plot(x[1], y[1], "s", mfc="none", color=color)
                axes[3].annotate(
                    f"L={a['depth']}", (x[0], y[0]), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
    batch = f"batch of {r['batch']} at {'x'.join(map(str, r['input']))}"
    for ax, x, y, title in (
        (axes[0], "depth", "MB saved for backward", f"activations of one training step, {batch}"),
        (axes[1], "parameters (millions)", "MB saved for backward", "activations against parameters"),
        (axes[2], "parameters (millions)", "MMACs per image", "compute against parameters"),
        (axes[3], "training step (s), mean over repeats", "MB saved for backward",
         "memory-efficient: o standard -> □ efficient"),
    ):  # fmt: skip
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[:3]:
        ax.legend(fontsize=8)
    return fig
