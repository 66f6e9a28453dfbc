"""Models side by side: parameters, MACs, receptive field and the images per second this machine
actually runs, and, when trained under the same budget, the accuracy each reached. The figure is the
classic chart of accuracy against MACs with bubble area proportional to parameters (Canziani et al.,
"An Analysis of Deep Neural Network Models for Practical Applications", 2016); untrained, MACs
against parameters.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError
from ..fuse import fuse_for_inference
from ..plots import pyplot
from ..runtime import channels_last_default
from .output import write_outputs
from .summary import summarize

# The batch the speed column is timed with, whatever batch the models train with: a fixed batch keeps
# the column comparable from one comparison to the next (bench's default, for the same reason).
SPEED_BATCH_SIZE = 16


@torch.no_grad()
def inference_speed(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch_size: int = SPEED_BATCH_SIZE,
    min_seconds: float = 1.0,
) -> float:
    """Images per second of the model as ``cnnlab eval`` runs it (fp32, BatchNorm folded, this
    machine's layout), on synthetic inputs: one warm-up batch, then the median of timed batches (at
    least 3, or ``min_seconds`` worth)."""
    from ..bench import time_steps

    cpu = torch.device("cpu")
    model = fuse_for_inference(model, channels_last=channels_last_default(cpu))
    x = torch.randn(batch_size, *input_size)
    times = time_steps(lambda: model(x), cpu, steps=3, warmup=1, min_seconds=min_seconds)
    return batch_size / statistics.median(times)


def _input_and_classes(
    models: list[str],
    input_size: tuple[int, int, int] | None,
    num_classes: int,
    train: bool,
    data: str,
    image_size: int | None,
    data_root: str | None,
) -> tuple[tuple[int, int, int], int]:
    """Trained, the data's input and classes; untrained, the given input or the one all models take."""
    if train:
        from ..data import load

        ds = load(data, root=data_root, image_size=image_size)
        own = (ds.in_chans, *ds.image_size)
        if input_size is not None and tuple(input_size) != own:
            raise CnnlabError(
                f"with --train the input is the data's, {'x'.join(map(str, own))}; "
                "resize it with --image-size instead of --input"
            )
        return own, ds.num_classes  # type: ignore[return-value]
    if input_size is None:
        defaults = {name: summarize(name)["input"] for name in models}
        if len({tuple(v) for v in defaults.values()}) > 1:
            listed = ", ".join(f"{n} {'x'.join(map(str, v))}" for n, v in defaults.items())
            raise CnnlabError(f"the models take different inputs ({listed}): choose one with --input")
        input_size = tuple(next(iter(defaults.values())))  # type: ignore[assignment]
    return input_size, num_classes  # type: ignore[return-value]


def _train_row(name: str, run_dir: Path, live: bool | None, quiet: bool, **config: Any) -> dict[str, Any]:
    """Train ``name`` into ``run_dir`` with the TrainConfig fields ``config``; its columns of the table."""
    from ..train import TrainConfig, fit

    result = fit(TrainConfig(model=name, out=str(run_dir), **config), live=live, quiet=quiet)
    return {
        "test_acc": result["test_acc"],
        "train_time_s": result["train_time_s"],
        "train_images_per_s": result["images_per_s"],
        "run_dir": str(run_dir),
    }


def compare(
    models: list[str],
    input_size: tuple[int, int, int] | None = None,
    train: bool = False,
    data: str = "mnist5k",
    epochs: int = 5,
    out_dir: str | os.PathLike[str] = "compare",
    image_size: int | None = None,
    num_classes: int = 1000,
    seed: int = 0,
    live: bool | None = None,
    quiet: bool = False,
    speed_batch_size: int = SPEED_BATCH_SIZE,
    **train_options: Any,
) -> dict[str, Any]:
    """One row per model; with ``train`` each is trained on ``data`` for ``epochs`` (into
    ``out_dir/runs/<model>``) and the costs are those of the data's input size and classes.
    ``train_options`` are further TrainConfig fields (batch_size, lr, data_root, ...); the speed column
    is timed with batches of ``speed_batch_size``, which the result reports as ``batch_size``."""
    from ..models import create_model

    if len(set(models)) != len(models) or not models:
        raise CnnlabError(f"compare takes one or more distinct models, got {' '.join(models)}")
    input_size, num_classes = _input_and_classes(
        models, input_size, num_classes, train, data, image_size, train_options.get("data_root")
    )
    rows = []
    for name in models:
        s = summarize(name, input_size, num_classes=num_classes)  # checks the name and the input size
        torch.manual_seed(seed)
        model = create_model(name, num_classes=num_classes, in_chans=input_size[0])
        row: dict[str, Any] = {
            "model": name,
            "params": s["params"],
            "macs": s["macs"],
            "receptive_field": s["receptive_field"],
            "images_per_s": round(inference_speed(model, input_size, speed_batch_size), 1),
        }
        del model
        if train:
            run_dir = Path(out_dir) / "runs" / name
            row.update(_train_row(
                name, run_dir, live, quiet, data=data, epochs=epochs, seed=seed, image_size=image_size,
                **train_options,
            ))  # fmt: skip
        rows.append(row)
    result = {
        "input": list(input_size),
        "num_classes": num_classes,
        "batch_size": speed_batch_size,
        "threads": torch.get_num_threads(),
        "trained": train,
        "models": rows,
    }
    if train:
        result.update(data=data, epochs=epochs, seed=seed)
    result["files"] = write_outputs(out_dir, "compare", result, plot_compare(result))
    return result


def plot_compare(r: dict[str, Any]) -> Any:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    rows = r["models"]
    biggest = max(row["params"] for row in rows)
    x = [row["macs"] for row in rows]
    y = [100 * row["test_acc"] if r["trained"] else row["params"] for row in rows]
    sizes = [2000 * row["params"] / biggest for row in rows]
    colors = plt.cm.tab10(range(len(rows)))
    # A legend rather than labels beside the bubbles: bubbles of related models sit on top of each other.
    for xi, yi, si, color, row in zip(x, y, sizes, colors, rows, strict=True):
        label = f"{row['model']}: {row['params']:,} params, {row['images_per_s']:,.0f} img/s"
        ax.scatter([xi], [yi], s=si, color=color, alpha=0.5, edgecolors="black", linewidths=0.5, label=label)
    legend = ax.legend(fontsize=8, loc="best", title="inference speed here, fp32", title_fontsize=8)
    for handle in legend.legend_handles:
        handle.set_sizes([50])
    ax.set_xscale("log")
    ax.set_xlabel("MACs per image (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    size = "x".join(map(str, r["input"]))
    if r["trained"]:
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(
            f"accuracy against MACs on {r['data']} ({size}, {r['epochs']} epochs each); "
            "bubble area: parameters",
            fontsize=10,
        )
        ax.margins(0.15)
    else:
        ax.set_yscale("log")
        ax.set_ylabel("parameters (log scale)")
        ax.set_title(f"MACs against parameters at {size}; bubble area: parameters", fontsize=10)
        ax.margins(0.2)
    return fig
