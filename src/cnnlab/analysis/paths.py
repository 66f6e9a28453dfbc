"""Residual networks as ensembles of paths: Veit, Wilber and Belongie, "Residual Networks Behave Like
Ensembles of Relatively Shallow Networks", NeurIPS 2016.

Unraveled, a network of n residual blocks is a collection of 2^n paths: each block is either passed
through its residual branch or skipped through its shortcut, so C(n, k) paths go through exactly k
branches, and path lengths follow Binomial(n, 1/2). Three measurements back the view:

* the unraveled view itself: the distribution of path lengths;
* the lesion study: deleting one residual block (keeping its shortcut, so the block becomes the
  shortcut alone; downsampling blocks keep their projection) costs a trained ResNet little, while
  deleting a layer of a trained plain net ruins it; deleting k random blocks degrades smoothly, as an
  ensemble losing members would;
* the gradient per path length: the forward pass runs the whole network, the backward pass goes
  through the residual branch of k sampled blocks and the shortcut of the others, so it measures the
  gradient of a single path of length k at the first block's input. It falls exponentially with k;
  times the C(n, k) paths of that length it shows where the total gradient comes from: from paths
  much shorter than the network.

What differs from the paper: the gradient is the mean over images of the per-image L2 norm of the
loss gradient at the first residual block's input, in eval mode (BN with running statistics), so a
forward pass can serve every sampled path.
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import Normalize
from ..errors import CnnlabError
from ..evaluate import evaluate
from ..models.resnet import ResidualBlock, ZeroPadShortcut
from ..plots import pyplot
from .output import DEFAULT_OUT, write_outputs


def residual_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ResidualBlock)]


def path_length_distribution(n: int) -> list[float]:
    """P(length = k) for k = 0..n: Binomial(n, 1/2), the share of the 2^n paths through k branches."""
    return [math.comb(n, k) / 2**n for k in range(n + 1)]


def shortcut_only(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """``block`` with its residual branch deleted, as in Veit et al.'s lesion study: the shortcut
    alone. A plain block that changes the shape subsamples and zero-pads (option A) instead."""
    if block.downsample is None and (block.stride != 1 or x.shape[1] != block.out_ch):
        x = ZeroPadShortcut(block.stride, block.out_ch - x.shape[1])(x)
    return block.relu(block.identity(x))


@contextmanager
def lesioned(blocks: list[ResidualBlock]) -> Iterator[None]:
    """Within the context, each of ``blocks`` computes its shortcut alone (its residual branch deleted)."""
    for block in blocks:
        # An instance attribute shadows the class's forward, so that the branch does not even run.
        block.forward = functools.partial(shortcut_only, block)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


def lesion_study(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalize: Normalize,
    samples: int = 10,
    max_k: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Test accuracy of ``model`` whole, with each single block deleted, and with k random blocks
    deleted (``samples`` draws for each k = 1..max_k, default n/2)."""
    named = residual_blocks(model)
    blocks = [b for _, b in named]
    device = next(model.parameters()).device

    def accuracy() -> float:
        return evaluate(model, images, labels, normalize, device)["top1"]

    single = []
    for name, block in named:
        with lesioned([block]):
            single.append({"block": name, "downsampling": block.stride != 1, "test_acc": accuracy()})
    rng = random.Random(seed)
    random_k = []
    for k in range(1, (max_k if max_k is not None else len(blocks) // 2) + 1):
        accs = []
        for _ in range(samples):
            with lesioned(rng.sample(blocks, k)):
                accs.append(accuracy())
        t = torch.tensor(accs)
        random_k.append({
            "k": k, "mean": t.mean().item(), "std": t.std().item() if samples > 1 else 0.0,
            "min": t.min().item(), "max": t.max().item(),
        })  # fmt: skip
    return {"baseline": accuracy(), "single": single, "random": random_k, "samples": samples}


@contextmanager
def single_path_backward(model: nn.Module) -> Iterator[Callable[[torch.Tensor, list[bool]], torch.Tensor]]:
    """Within the context, forward passes of ``model`` run as usual, and the function it yields,
    ``gradient(loss, route)``, back-propagates ``loss`` of the last forward pass along one path only:
    through the residual branch of block i where ``route[i]`` is true, its shortcut where false. It
    returns the gradient at the first block's input, and keeps the graph for the next route."""
    blocks = [b for _, b in residual_blocks(model)]
    if not all(b.shortcut for b in blocks):
        raise CnnlabError("a plain network has no shortcuts and so only one path: measure its residual twin")
    through_branch = torch.zeros(len(blocks))  # read by the hooks at backward time

    def routed(i: int, block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
        branch = block.residual(x)
        # A view, so that its hook sees the shortcut's gradient alone: the identity shortcut returns
        # x itself, whose gradient also holds the branch's.
        shortcut = block.identity(x).view_as(branch)
        branch.register_hook(lambda g: g * through_branch[i])
        shortcut.register_hook(lambda g: g * (1 - through_branch[i]))
        return block.relu(branch + shortcut)

    first_input: list[torch.Tensor] = []

    def gradient(loss: torch.Tensor, route: list[bool]) -> torch.Tensor:
        through_branch.copy_(torch.tensor(route, dtype=through_branch.dtype))
        return torch.autograd.grad(loss, first_input[-1], retain_graph=True)[0]

    hook = blocks[0].register_forward_pre_hook(lambda _m, args: first_input.append(args[0]))
    for i, block in enumerate(blocks):
        block.forward = lambda x, i=i, block=block: routed(i, block, x)  # type: ignore[method-assign]
    try:
        yield gradient
    finally:
        hook.remove()
        for block in blocks:
            del block.forward


def gradient_per_path_length(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    samples: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Gradient magnitude at the first block's input of single paths of each length k = 0..n: for
    each batch, one forward pass, then ``samples`` random paths of each length (one for 0 and n)."""
    n = len(residual_blocks(model))
    rng = random.Random(seed)
    magnitudes: list[list[float]] = [[] for _ in range(n + 1)]
    was_training = model.training
    model.eval()
    try:
        with single_path_backward(model) as gradient:
            for x, y in batches:
                loss = F.cross_entropy(model(x), y, reduction="sum")  # per-image gradients stay apart
                for k in range(n + 1):
                    for _ in range(samples if 0 < k < n else 1):
                        chosen = set(rng.sample(range(n), k))
                        g = gradient(loss, [i in chosen for i in range(n)])
                        magnitudes[k].append(g.flatten(1).norm(dim=1).mean().item())
    finally:
        model.train(was_training)
    mean = [sum(m) / len(m) for m in magnitudes]
    total = [mean[k] * math.comb(n, k) for k in range(n + 1)]
    share = [t / sum(total) for t in total]
    # Decay per block: the slope of log magnitude against k, over the lengths with a gradient.
    ks = [k for k in range(n + 1) if mean[k] > 0]
    logs = torch.tensor([math.log(mean[k]) for k in ks], dtype=torch.float64)
    kt = torch.tensor(ks, dtype=torch.float64)
    slope = (((kt - kt.mean()) * (logs - logs.mean())).sum() / ((kt - kt.mean()) ** 2).sum()).item()
    cumulative = torch.tensor(share, dtype=torch.float64).cumsum(0)
    low = int(torch.searchsorted(cumulative, torch.tensor(0.05, dtype=torch.float64)))
    high = int(torch.searchsorted(cumulative, torch.tensor(0.95, dtype=torch.float64)))
    return {
        "blocks": n,
        "magnitude": mean,
        "paths": [math.comb(n, k) for k in range(n + 1)],
        "total_share": share,
        "decay_per_block": math.exp(slope),
        "gradient_mean_length": sum(k * s for k, s in enumerate(share)),
        "path_mean_length": n / 2,
        "effective_lengths": [low, min(high, n)],
        "samples_per_length": len(magnitudes[1]) if n > 1 else len(magnitudes[0]),
    }


def _dataset_and_model(
    source: str, data: str | None, seed: int
) -> tuple[nn.Module, Any, Normalize, str, bool]:
    """A run's trained model and data, or a fresh registered model shaped for ``data``."""
    if Path(source).is_dir():
        from ..predict import run_dataset
        from ..rundir import load_run, read_config

        model = load_run(source)
        ds = run_dataset(source, data)
        cfg = model.data_config  # type: ignore[attr-defined]
        return model, ds, Normalize(tuple(cfg.mean), tuple(cfg.std)), read_config(source).model, True
    from ..data import load
    from ..models import create_model

    ds = load(data or "mnist5k", download=False)
    torch.manual_seed(seed)
    model = create_model(source, num_classes=ds.num_classes, in_chans=ds.in_chans).eval()
    return model, ds, Normalize(ds.mean, ds.std), source, False


def analyze_paths(
    source: str,
    plain: str | None = None,
    data: str | None = None,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    **options: Any,
) -> dict[str, Any]:
    """Write paths.json and paths.png (see ``paths_study``); return the numbers."""
    result = paths_study(source, plain, data, **options)
    result["files"] = write_outputs(out_dir, "paths", result, plot_paths(result))
    return result


def paths_study(
    source: str,
    plain: str | None = None,
    data: str | None = None,
    samples: int = 5,
    lesion_samples: int = 10,
    images: int = 1000,
    batch_size: int = 64,
    batches: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """The unraveled view, the gradient per path length and, for a run directory, the lesion study
    (with ``plain``, a run of the plain twin, for contrast)."""
    model, ds, normalize, name, trained = _dataset_and_model(source, data, seed)
    if not residual_blocks(model):
        raise CnnlabError(f"{name} has no residual blocks; analyse a ResNet (e.g. resnet20) or a run of one")
    n = len(residual_blocks(model))
    test_x, test_y = ds.test_images[:images], ds.test_labels[:images]
    g = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(len(ds.train_labels), generator=g)[:batch_size] for _ in range(batches)]
    result: dict[str, Any] = {
        "model": name,
        "source": str(source),
        "trained": trained,
        "dataset": ds.name,
        "blocks": n,
        "paths": 2**n,
        "length_distribution": path_length_distribution(n),
        "gradient": gradient_per_path_length(
            model, [(normalize(ds.train_images[i]), ds.train_labels[i]) for i in picks], samples, seed
        ),
    }
    if trained:
        result["lesion"] = lesion_study(model, test_x, test_y, normalize, lesion_samples, seed=seed)
        result["lesion"]["images"] = len(test_y)
    if plain is not None:
        if not trained:
            raise CnnlabError("--plain contrasts two trained runs: give a run directory as well")
        twin, tds, tnorm, tname, _ = _dataset_and_model(plain, data, seed)
        if tds.name != ds.name:
            raise CnnlabError(f"the plain run was trained on {tds.name}, the residual one on {ds.name}")
        if not residual_blocks(twin):
            raise CnnlabError(f"{plain} holds a {tname}, which has no blocks to delete")
        study = lesion_study(twin, tds.test_images[:images], tds.test_labels[:images], tnorm, 1, max_k=0)
        result["plain"] = {"model": tname, "source": str(plain), **study}
    result["chance"] = 1 / ds.num_classes
    return result


def plot_paths(r: dict[str, Any]) -> Any:
    plt = pyplot()

    lesion = "lesion" in r
    fig, axes = plt.subplots(
        2 if lesion else 1, 2, figsize=(12, 8.5 if lesion else 4.5), layout="constrained"
    )
    axes = axes.flatten()
    n = r["blocks"]
    ax = axes[0]
    ax.bar(range(n + 1), r["length_distribution"], color="tab:blue", alpha=0.8)
    ax.set_xlabel("path length k (residual branches passed through)")
    ax.set_ylabel(f"share of the paths: Binomial({n}, 1/2)")
    ax.set_title(f"{r['model']} unraveled: {n} blocks, 2^{n} = {r['paths']:,} paths", fontsize=10)

    gr = r["gradient"]
    ax = axes[1]
    ax.semilogy(range(n + 1), gr["magnitude"], "o-", color="tab:red", label="gradient of one path")
    ax.set_xlabel("path length k")
    ax.set_ylabel("gradient magnitude at the first block's input", color="tab:red")
    bx = ax.twinx()
    bx.bar(range(n + 1), gr["total_share"], color="tab:green", alpha=0.35, label="x number of paths")
    bx.set_ylabel("share of the total gradient (magnitude x C(n, k))", color="tab:green")
    ax.set_zorder(bx.get_zorder() + 1)  # the line in front of the bars
    ax.patch.set_visible(False)
    lo, hi = gr["effective_lengths"]
    ax.set_title(
        f"{'trained' if r['trained'] else 'untrained'} {r['model']}: each block multiplies a path's gradient "
        f"by {gr['decay_per_block']:.2f};\n90% of the gradient comes from paths of length {lo}-{hi} "
        f"(mean {gr['gradient_mean_length']:.1f}, paths' mean {gr['path_mean_length']:g})",
        fontsize=9,
    )
    if lesion:
        _plot_lesion(axes[2], axes[3], r)
    return fig


def _plot_lesion(ax: Any, bx: Any, r: dict[str, Any]) -> None:
    """The lesion study's two panels: one block deleted (``ax``), k random blocks deleted (``bx``)."""
    les = r["lesion"]
    x = range(len(les["single"]))
    colors = ["tab:orange" if s["downsampling"] else "tab:blue" for s in les["single"]]
    ax.bar(x, [s["test_acc"] for s in les["single"]], color=colors, alpha=0.8, label="ResNet, block deleted")
    if "plain" in r:
        ax.plot(
            range(len(r["plain"]["single"])),
            [s["test_acc"] for s in r["plain"]["single"]],
            "s",
            color="black",
            label=f"{r['plain']['model']}, block deleted",
        )
        ax.axhline(r["plain"]["baseline"], color="black", linestyle=":", linewidth=1)
    ax.axhline(les["baseline"], color="tab:blue", linestyle="--", linewidth=1, label="intact")
    ax.axhline(r["chance"], color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(list(x), [s["block"].replace("layer", "") for s in les["single"]], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_xlabel("deleted block (orange: downsampling)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax.set_title("lesion study: delete one block (the shortcut stays)", fontsize=10)

    ks = [row["k"] for row in les["random"]]
    bx.errorbar(
        [0, *ks],
        [les["baseline"], *(row["mean"] for row in les["random"])],
        yerr=[0, *(row["std"] for row in les["random"])],
        fmt="o-",
        capsize=3,
    )
    bx.axhline(r["chance"], color="gray", linestyle=":", linewidth=1)
    bx.set_ylim(0, 1)
    bx.set_xticks([0, *ks])
    bx.set_xlabel("blocks deleted at random, k")
    bx.set_ylabel("test accuracy")
    bx.set_title(f"deleting k random blocks ({les['samples']} draws each, mean and std)", fontsize=10)
