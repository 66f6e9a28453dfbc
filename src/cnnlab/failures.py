"""Where a trained model fails, from its logits on a test set: the confusion matrix, precision, recall
and F1 per class, the most confused pairs, the most confidently wrong images, and calibration.

Calibration is the gap between how sure the model says it is (its top softmax probability) and how
often it is right. The expected calibration error (ECE, Guo et al. 2017, "On Calibration of Modern
Neural Networks") bins the test images by confidence into equal-width bins and averages
|accuracy - confidence| over the bins, weighted by how many images each holds; the reliability
diagram draws each bin's accuracy against its confidence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .plots import png_bytes, pyplot
from .rundir import atomic_write, write_json

CALIBRATION_BINS = 15  # as Guo et al. report ECE
GALLERY = 16  # confidently wrong images shown
PAIRS = 10  # most confused pairs listed


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    index = labels.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class(cm: torch.Tensor, classes: list[str]) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1 and support of each class; a class never predicted (or never present)
    scores 0 where its denominator is 0, as scikit-learn's ``zero_division=0`` does."""
    cm = cm.double()
    hits = cm.diagonal()
    predicted, support = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), 0.0)
    recall = torch.where(support > 0, hits / support.clamp_min(1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-300), 0.0)
    return [
        {
            "class": name,
            "precision": precision[i].item(),
            "recall": recall[i].item(),
            "f1": f1[i].item(),
            "support": int(support[i].item()),
        }
        for i, name in enumerate(classes)
    ]


def confused_pairs(
    cm: torch.Tensor, classes: list[str], n: int = PAIRS
) -> list[dict[str, float | int | str]]:
    """The ``n`` largest off-diagonal counts: images of ``true`` taken for ``predicted``, and their share
    of ``true``'s test images; ties go to the lower (true, predicted) index."""
    k = len(classes)
    off = cm.clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    # A stable sort on the negated counts keeps ties in index order, on every machine.
    order = torch.sort(-flat, stable=True).indices[: min(n, k * k)]
    support = cm.sum(1)
    return [
        {
            "true": classes[i // k],
            "predicted": classes[i % k],
            "count": int(flat[i].item()),
            "share_of_true": flat[i].item() / max(1, int(support[i // k].item())),
        }
        for i in order.tolist()
        if flat[i] > 0
    ]


def calibration(confidence: torch.Tensor, correct: torch.Tensor, bins: int = CALIBRATION_BINS) -> dict:
    """ECE over ``bins`` equal-width confidence bins (a bin holds (lo, hi], the first also 0), and each
    bin's count, mean confidence and accuracy (None when empty)."""
    confidence, correct = confidence.double(), correct.double()
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(which, minlength=bins)
    conf_sum = torch.bincount(which, weights=confidence, minlength=bins)
    hit_sum = torch.bincount(which, weights=correct, minlength=bins)
    n = max(1, len(confidence))
    ece = ((hit_sum - conf_sum).abs().sum() / n).item()
    rows = []
    for b in range(bins):
        c = int(count[b].item())
        rows.append(
            {
                "lo": b / bins,
                "hi": (b + 1) / bins,
                "count": c,
                "confidence": conf_sum[b].item() / c if c else None,
                "accuracy": hit_sum[b].item() / c if c else None,
            }
        )
    return {"ece": ece, "bins": rows, "mean_confidence": confidence.mean().item() if len(confidence) else 0.0}


def confidently_wrong(probs: torch.Tensor, labels: torch.Tensor, n: int = GALLERY) -> list[int]:
    """Indices of the ``n`` wrong predictions made with the highest probability, most confident first."""
    confidence, pred = probs.max(1)
    wrong = torch.nonzero(pred != labels).flatten()
    order = torch.sort(-confidence[wrong].double(), stable=True).indices
    return wrong[order[:n]].tolist()


def summarize(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Everything `cnnlab eval` reports about the failures of ``logits`` (N, K) on ``labels`` (N,)."""
    logits, labels = logits.float().cpu(), labels.long().cpu()
    probs = logits.softmax(1)
    confidence, pred = probs.max(1)
    cm = confusion_matrix(pred, labels, len(classes))
    scores = per_class(cm, classes)
    mistakes = confidently_wrong(probs, labels)
    return {
        "classes": classes,
        "confusion": cm.tolist(),
        "per_class": scores,
        "macro_f1": sum(float(s["f1"]) for s in scores) / max(1, len(scores)),
        "confused_pairs": confused_pairs(cm, classes),
        "calibration": calibration(confidence, pred == labels),
        "confidently_wrong": [
            {
                "index": i,
                "true": classes[int(labels[i])],
                "predicted": classes[int(pred[i])],
                "confidence": confidence[i].item(),
            }
            for i in mistakes
        ],
    }


def plot_confusion(summary: dict, title: str) -> Any:
    """The confusion matrix, each row as a share of the true class's images, counts written in when the
    classes are few enough to read."""
    plt = pyplot()
    cm = torch.tensor(summary["confusion"], dtype=torch.float64)
    classes = summary["classes"]
    k = len(classes)
    share = cm / cm.sum(1, keepdim=True).clamp_min(1)
    side = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), constrained_layout=True)
    im = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=90 if k > 10 else 0, fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j] > 0:
                    white = share[i, j] > 0.5
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if white else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return fig


def plot_mistakes(summary: dict, images: torch.Tensor, title: str) -> Any:
    """The most confidently wrong test images, each titled true -> predicted and the probability."""
    plt = pyplot()
    wrong = summary["confidently_wrong"]
    cols = 4 if len(wrong) > 4 else max(1, len(wrong))
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows + 0.4), squeeze=False,
                             constrained_layout=True)  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    for ax, w in zip(axes.flat, wrong, strict=False):
        image = images[w["index"]]
        shown = image[0] if image.shape[0] == 1 else image[:3].permute(1, 2, 0)
        ax.imshow(shown.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{w['true']} → {w['predicted']}\np = {w['confidence']:.2f}", fontsize=8)
    if not wrong:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_calibration(summary: dict, title: str) -> Any:
    """The reliability diagram: each confidence bin's accuracy against the diagonal of perfect
    calibration, and below it how many images each bin holds."""
    plt = pyplot()
    cal = summary["calibration"]
    bins = cal["bins"]
    width = bins[0]["hi"] - bins[0]["lo"]
    centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True,
                                      constrained_layout=True)  # fmt: skip
    filled = [(c, b) for c, b in zip(centres, bins, strict=True) if b["count"]]
    top.bar([c for c, _ in filled], [b["accuracy"] for _, b in filled], width=width, edgecolor="black",
            color="#4c72b0", label="accuracy")  # fmt: skip
    top.bar([c for c, _ in filled], [b["confidence"] - b["accuracy"] for _, b in filled], width=width,
            bottom=[b["accuracy"] for _, b in filled], color="#dd8452", alpha=0.5, label="gap")  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title}\nECE {100 * cal['ece']:.2f}%", fontsize=10)
    bottom.bar(centres, [b["count"] for b in bins], width=width, color="gray", edgecolor="black")
    bottom.set_yscale("symlog")
    bottom.set_xlabel("confidence (top softmax probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    return fig


FILES = {"json": "eval.json", "confusion": "confusion.png", "mistakes": "mistakes.png",
         "calibration": "calibration.png"}  # fmt: skip


def write_failures(out_dir: str | os.PathLike[str], result: dict, images: torch.Tensor) -> dict[str, str]:
    """Write ``result`` (with its ``failures`` summary) as eval.json and the three figures into
    ``out_dir``, each whole or not at all; returns their paths."""
    out = Path(out_dir)
    paths = {key: str(out / name) for key, name in FILES.items()}
    summary = result["failures"]
    title = f"{result['model']} on {result['dataset']}: top-1 {100 * result['test_acc']:.2f}%"
    write_json(Path(paths["json"]), result)
    atomic_write(Path(paths["confusion"]), png_bytes(plot_confusion(summary, title)))
    atomic_write(
        Path(paths["mistakes"]), png_bytes(plot_mistakes(summary, images, f"{title}: most confidently wrong"))
    )
    atomic_write(Path(paths["calibration"]), png_bytes(plot_calibration(summary, title)))
    return paths
