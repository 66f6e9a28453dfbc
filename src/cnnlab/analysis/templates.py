"""A linear classifier's weights as images: does each class template look like the class's average
image? The claim of the course, as a number: the correlation of each template with its class mean,
against its correlation with the other classes' means."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..data.augment import Normalize
from ..errors import CnnlabError
from ..plots import pyplot
from ..predict import run_dataset
from ..rundir import load_run, read_config
from .output import DEFAULT_OUT, write_outputs


def correlation_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every row of ``a`` (flattened) with every row of ``b``."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a = (a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True).clamp_min(1e-12)
    b = (b - b.mean(1, keepdim=True)) / b.std(1, keepdim=True).clamp_min(1e-12)
    return a @ b.T / (a.shape[1] - 1)


@torch.no_grad()
def template_study(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The numbers, the templates (K, C, H, W) and the class means (K, C, H, W) of a trained linear run.

    Class means are taken over the normalized training images, the space the weights act on.
    """
    config = read_config(run_dir)
    model = load_run(run_dir)
    if not hasattr(model, "templates"):
        raise CnnlabError(
            f"{run_dir} holds a {config.model}, not a linear classifier; train one with "
            "`cnnlab train --model linear` and analyse that run"
        )
    data = run_dataset(run_dir)
    cfg = model.data_config  # type: ignore[attr-defined]
    images = Normalize(tuple(cfg.mean), tuple(cfg.std))(data.train_images)
    means = torch.stack([images[data.train_labels == c].mean(0) for c in range(data.num_classes)])
    templates = model.templates().float()  # type: ignore[operator]
    corr = correlation_matrix(templates, means)
    own = corr.diagonal()
    others = corr[~torch.eye(len(corr), dtype=torch.bool)]
    result = {
        "run": str(run_dir), "model": config.model, "dataset": data.name, "classes": data.classes,
        "correlation_with_own_mean": {c: round(own[i].item(), 4) for i, c in enumerate(data.classes)},
        "mean_correlation_own": own.mean().item(),
        "mean_correlation_other": others.mean().item(),
        "own_mean_is_best_match": (corr.argmax(1) == torch.arange(len(corr))).float().mean().item(),
        "matrix": [[round(v, 4) for v in row] for row in corr.tolist()],
    }  # fmt: skip
    return result, templates, means


def plot_templates(result: dict[str, Any], templates: torch.Tensor, means: torch.Tensor) -> Any:
    plt = pyplot()

    k = len(templates)
    fig, axes = plt.subplots(2, k, figsize=(1.3 * k, 3.2), squeeze=False, constrained_layout=True)

    def show(ax: Any, image: torch.Tensor) -> None:
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)  # each on its own scale
        ax.imshow((image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy(), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])

    for i, name in enumerate(result["classes"]):
        show(axes[0, i], templates[i])
        show(axes[1, i], means[i])
        axes[0, i].set_title(f"{name}\nr={result['correlation_with_own_mean'][name]:.2f}", fontsize=8)
    axes[0, 0].set_ylabel("template")
    axes[1, 0].set_ylabel("class mean")
    fig.suptitle(
        f"linear classifier on {result['dataset']}: template vs class mean, mean r = "
        f"{result['mean_correlation_own']:.2f} "
        f"(other classes' means: {result['mean_correlation_other']:.2f})",
        fontsize=9,
    )
    return fig


def analyze_templates(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] = DEFAULT_OUT
) -> dict[str, Any]:
    """Write templates.json and templates.png for a trained linear run; return the numbers."""
    result, templates, means = template_study(run_dir)
    result["files"] = write_outputs(out_dir, "templates", result, plot_templates(result, templates, means))
    return result
