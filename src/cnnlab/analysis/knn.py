"""k-nearest neighbours measured: accuracy against k, and query time against the size of the stored
set, with a straight-line fit. The claim of the course: k-NN needs no training but pays at test time,
in proportion to what it stores (O(N) per query)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from ..data.augment import Normalize
from ..data.base import stratified_split
from ..models import create_model
from ..plots import pyplot
from .output import DEFAULT_OUT, write_outputs

KS = (1, 3, 5, 7, 9, 15, 25)
METRICS = ("l2", "cosine")


@torch.no_grad()
def knn_study(
    data: str = "mnist5k",
    ks: Sequence[int] = KS,
    sizes: Sequence[int] | None = None,
    repeats: int = 3,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Test accuracy for each k and metric on the whole training set, then the time to classify the
    test set against stored sets of growing size (stratified subsets; the median of ``repeats``)."""
    d = datasets.load(data, root=data_root, download=False)
    normalize = Normalize(d.mean, d.std)
    x_train, x_test = normalize(d.train_images), normalize(d.test_images)
    accuracy: dict[str, dict[int, float]] = {}
    for metric in METRICS:
        accuracy[metric] = {}
        for k in ks:
            model = create_model("knn", num_classes=d.num_classes, in_chans=d.in_chans, k=k, metric=metric)
            model.add(x_train, d.train_labels)
            accuracy[metric][k] = (model(x_test).argmax(1) == d.test_labels).float().mean().item()

    n = len(d.train_labels)
    sizes = sorted(sizes or {max(d.num_classes, n * i // 8) for i in (1, 2, 3, 4, 6, 8)})
    stored, seconds = [], []
    for size in sizes:
        # A stratified subset of `size` samples: every class keeps its share as the set grows.
        keep, _ = stratified_split(d.train_labels, 1 - size / n) if size < n else (torch.arange(n), None)
        model = create_model("knn", num_classes=d.num_classes, in_chans=d.in_chans, k=3, metric="l2")
        model.add(x_train[keep], d.train_labels[keep])
        stored.append(len(keep))
        model(x_test[:10])  # joins the stored batches and warms up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x_test)
            times.append(time.perf_counter() - start)
        seconds.append(float(np.median(times)))
    slope, intercept = np.polyfit(stored, seconds, 1)
    predicted = slope * np.asarray(stored) + intercept
    total = float(np.sum((np.asarray(seconds) - np.mean(seconds)) ** 2))
    r2 = 1.0 - float(np.sum((np.asarray(seconds) - predicted) ** 2)) / total if total > 0 else 1.0
    return {
        "dataset": d.name, "train_size": n, "queries": len(d.test_labels),
        "accuracy": {m: {str(k): v for k, v in acc.items()} for m, acc in accuracy.items()},
        "best": max(
            ({"metric": m, "k": k, "accuracy": v} for m, acc in accuracy.items() for k, v in acc.items()),
            key=lambda row: row["accuracy"]),
        "timing": {"stored": stored, "seconds": seconds,
                   "ms_per_query": [1000 * s / len(d.test_labels) for s in seconds]},
        "fit": {"slope_s_per_stored_sample": float(slope), "intercept_s": float(intercept), "r2": r2},
    }  # fmt: skip


def plot_knn(result: dict[str, Any]) -> Any:
    plt = pyplot()

    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for metric, acc in result["accuracy"].items():
        ks = [int(k) for k in acc]
        ax_acc.plot(ks, [100 * v for v in acc.values()], "o-", label=metric)
    ax_acc.set(
        xlabel="k (neighbours voting)", ylabel="test accuracy (%)", title=f"k-NN on {result['dataset']}"
    )
    ax_acc.legend()
    t, fit = result["timing"], result["fit"]
    ax_time.plot(t["stored"], t["seconds"], "o", label="measured")
    xs = np.linspace(0, max(t["stored"]), 50)
    ax_time.plot(
        xs,
        fit["slope_s_per_stored_sample"] * xs + fit["intercept_s"],
        "--",
        label=f"linear fit, R² = {fit['r2']:.3f}",
    )
    ax_time.set(
        xlabel="stored training images",
        ylabel=f"seconds for {result['queries']} queries",
        title="query time grows with the stored set",
    )
    ax_time.legend()
    for ax in (ax_acc, ax_time):
        ax.grid(alpha=0.3)
    return fig


def analyze_knn(
    data: str = "mnist5k", out_dir: str | os.PathLike[str] = DEFAULT_OUT, **kwargs: Any
) -> dict[str, Any]:
    """Write knn.json and knn.png; return the numbers."""
    result = knn_study(data, **kwargs)
    result["files"] = write_outputs(out_dir, "knn", result, plot_knn(result))
    return result
