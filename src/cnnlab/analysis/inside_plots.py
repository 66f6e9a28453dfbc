"""The figures of `cnnlab analyze cam`, `filters` and `features` (see inside.py for what they show)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..plots import pyplot

CAM_ROWS = 16  # images drawn in cam.png; cam.json has them all
SHOWN_FILTERS = 64  # filters drawn in filters.png; filters.json has the norms of all
SHOWN_CHANNELS = 8  # channels drawn per stage in features.png


def _bare(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _show_image(ax: Any, image: torch.Tensor) -> None:
    """A (C, H, W) uint8 image: one channel in gray, three as RGB."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image.permute(1, 2, 0).numpy())
    _bare(ax)


def _overlay(ax: Any, image: torch.Tensor, cam: torch.Tensor, title: str) -> None:
    _show_image(ax, image)
    ax.imshow(cam.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)


def plot_cam(result: dict[str, Any], drawn: list[dict[str, Any]]) -> Any:
    """One row per image: the image, Grad-CAM of the top class, of the named class (if any), saliency."""
    plt = pyplot()
    target = result["class"]
    cols = 4 if target is not None else 3
    fig, axes = plt.subplots(
        len(drawn), cols, figsize=(2.2 * cols, 2.3 * len(drawn)), squeeze=False, constrained_layout=True
    )
    for ax_row, maps, row in zip(axes, drawn, result["images"], strict=False):
        _show_image(ax_row[0], maps["image"])
        ax_row[0].set_title(Path(row["image"]).name[:28], fontsize=8)
        zero = "" if row["cam_peak"] else ", CAM zero"
        _overlay(
            ax_row[1], maps["image"], maps["cam"], f"{row['top_class']} ({100 * row['top_prob']:.1f}%){zero}"
        )
        if target is not None:
            zero = "" if row["class_cam_peak"] else ", CAM zero"
            _overlay(
                ax_row[2],
                maps["image"],
                maps["class_cam"],
                f"{target} ({100 * row['class_prob']:.1f}%){zero}",
            )
        ax_row[-1].imshow(maps["saliency"].numpy(), cmap="hot", vmin=0, vmax=1)
        ax_row[-1].set_title(f"saliency, {row['top_class']}", fontsize=8)
        _bare(ax_row[-1])
    shape = "x".join(map(str, result["layer_shape"]))
    fig.suptitle(f"{result['model']}: Grad-CAM at {result['layer']} ({shape}) and saliency", fontsize=9)
    return fig


def filter_mosaic(weights: torch.Tensor) -> np.ndarray:
    """Filters (N, C_in, k, k) as one RGB image (rows, cols, 3) in 0..1, a 1 px white gap between
    them. Each filter is scaled to its own max |w|, 0 at mid-gray, so sign and shape show whatever
    its size; 3 input channels as RGB, 1 as gray, other counts as their mean."""
    n, c_in, kh, kw = weights.shape
    w = weights if c_in in (1, 3) else weights.mean(1, keepdim=True)
    scale = w.flatten(1).abs().amax(1).clamp_min(1e-12)
    w = (0.5 + 0.5 * w / scale[:, None, None, None]).expand(-1, 3, -1, -1)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.ones(3, rows * (kh + 1) + 1, cols * (kw + 1) + 1)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, 1 + r * (kh + 1) : (r + 1) * (kh + 1), 1 + c * (kw + 1) : (c + 1) * (kw + 1)] = w[i]
    return grid.permute(1, 2, 0).numpy()


def plot_filters(result: dict[str, Any], trained: torch.Tensor, initial: torch.Tensor | None) -> Any:
    """The first layer's filters, trained beside initial (when the run's start can be rebuilt)."""
    plt = pyplot()
    panels = [("trained", trained)] + ([("initial", initial)] if initial is not None else [])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(4.2 * len(panels), 6), 4.4), squeeze=False, constrained_layout=True
    )
    for ax, (label, weights) in zip(axes[0], panels, strict=True):
        ax.imshow(filter_mosaic(weights[:SHOWN_FILTERS]), interpolation="nearest")
        ax.set_title(label, fontsize=9)
        _bare(ax)
    n = len(trained)
    shown = f"first {SHOWN_FILTERS} of {n}" if n > SHOWN_FILTERS else f"all {n}"
    cosine = result["mean_cosine"]
    moved = f"mean cosine trained vs initial {cosine:.2f}" if cosine is not None else "initial unknown"
    fig.suptitle(
        f"{result['model']}: {result['layer']} {'x'.join(map(str, result['weight_shape']))}, {shown} "
        f"filters,\neach scaled to its own max |w|; {moved}",
        fontsize=9,
    )
    return fig


def plot_features(result: dict[str, Any], image: torch.Tensor, shown: list[torch.Tensor]) -> Any:
    """The input image, then one row per stage: its most active channels, each on its own scale."""
    plt = pyplot()
    cols = SHOWN_CHANNELS
    fig, axes = plt.subplots(
        len(shown) + 1, cols, figsize=(1.3 * cols, 1.45 * (len(shown) + 1)), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    _show_image(axes[0, 0], image)
    axes[0, 0].set_title("input", fontsize=7)
    for ax in axes[0, 1:]:
        ax.axis("off")
    for ax_row, maps, stage in zip(axes[1:], shown, result["stages"], strict=True):
        for j, ax in enumerate(ax_row):
            _bare(ax)
            if j >= len(maps):
                ax.axis("off")
                continue
            ax.imshow(maps[j].numpy(), cmap="viridis")
            ax.set_title(f"ch {stage['shown_channels'][j]}", fontsize=6)
        shape = "x".join(map(str, stage["shape"]))
        ax_row[0].set_ylabel(f"{stage['name']}\n{shape}", fontsize=7)
    fig.suptitle(f"{result['model']}: feature maps per stage, most active channels", fontsize=9)
    return fig
