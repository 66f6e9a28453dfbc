"""Squeeze-and-Excitation at work: the excitation (gate) values of every SE block of a trained model,
per channel and per class, as in the SENet paper's study of class-specific activations (Hu et al.
2018, Sec. 7.2). The paper's finding: early blocks excite the same channels whatever the class, deeper
blocks grow class-specific. ``class_spread`` measures that: for each channel, the standard deviation of
its mean gate across classes, averaged over channels."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..data.augment import Normalize, batches
from ..errors import CnnlabError
from ..layers import SEBlock
from ..plots import pyplot
from ..predict import run_dataset
from ..rundir import load_run, read_config
from .output import DEFAULT_OUT, write_outputs


@torch.no_grad()
def se_study(run_dir: str | os.PathLike[str], max_images: int = 1000) -> dict[str, Any]:
    """Gate statistics of each SE block over the run's test images, overall and per class."""
    config = read_config(run_dir)
    model = load_run(run_dir)
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, SEBlock)]
    if not blocks:
        raise CnnlabError(
            f"{run_dir} holds a {config.model}, which has no SE blocks; analyse a run of an se_* model"
        )
    data = run_dataset(run_dir)
    cfg = model.data_config  # type: ignore[attr-defined]
    normalize = Normalize(tuple(cfg.mean), tuple(cfg.std))
    gates: dict[str, list[torch.Tensor]] = {name: [] for name, _ in blocks}
    # The gate is the sigmoid of fc2's output: hooking fc2 reads it without changing the model.
    hooks = [
        block.fc2.register_forward_hook(
            lambda _m, _i, out, name=name: gates[name].append(torch.sigmoid(out.flatten(1)))
        )
        for name, block in blocks
    ]
    images, labels = data.test_images[:max_images], data.test_labels[:max_images]
    try:
        for x, _ in batches(images, labels, 250):
            model(normalize(x))
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, _ in blocks:
        g = torch.cat(gates[name])  # (N, C)
        per_class = torch.stack([g[labels == c].mean(0) for c in range(data.num_classes)])  # (K, C)
        rows.append({
            "block": name, "channels": g.shape[1], "mean": g.mean().item(), "std": g.std().item(),
            "class_spread": per_class.std(0).mean().item(),
            "per_class_mean": [[round(v, 4) for v in row] for row in per_class.tolist()],
        })  # fmt: skip
    return {"run": str(run_dir), "model": config.model, "dataset": data.name, "classes": data.classes,
            "images": len(labels), "blocks": rows}  # fmt: skip


def plot_se(result: dict[str, Any]) -> Any:
    plt = pyplot()

    # The last block of each stage, as the paper's figure picks a few blocks from shallow to deep.
    stages: dict[str, dict[str, Any]] = {}
    for row in result["blocks"]:
        stages[row["block"].split(".")[0]] = row
    chosen = list(stages.values())
    fig, axes = plt.subplots(
        1, len(chosen) + 1, figsize=(4 * (len(chosen) + 1), 3.4), constrained_layout=True
    )
    cmap = plt.get_cmap("tab10")
    for ax, row in zip(axes, chosen, strict=False):
        for k, values in enumerate(row["per_class_mean"]):
            ax.plot(values, lw=0.9, color=cmap(k % 10), label=result["classes"][k])
        ax.set(
            title=f"{row['block']}: class spread {row['class_spread']:.3f}",
            xlabel="channel",
            ylabel="mean excitation",
            ylim=(0, 1),
        )
    axes[0].legend(fontsize=6, ncol=2, title="class", title_fontsize=7)
    spread = [row["class_spread"] for row in result["blocks"]]
    axes[-1].plot(range(1, len(spread) + 1), spread, "o-")
    axes[-1].set(
        title="class-specificity by depth",
        xlabel="SE block (shallow to deep)",
        ylabel="std across classes of mean gate",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{result['model']} on {result['dataset']}: SE excitations per class ({result['images']} images)"
    )
    return fig


def analyze_se(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] = DEFAULT_OUT
) -> dict[str, Any]:
    """Write se.json and se.png for a trained SE model's run; return the numbers."""
    result = se_study(run_dir)
    result["files"] = write_outputs(out_dir, "se", result, plot_se(result))
    return result
