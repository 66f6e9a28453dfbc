"""Models side by side: parameters, MACs, receptive field and the images per second this machine
actually runs, and, when trained under the same budget, the accuracy each reached. The figure is the
classic chart of accuracy against MACs with bubble area proportional to parameters (Canziani et al.,
"An Analysis of Deep Neural Network Models for Practical Applications", 2016); untrained, MACs
against parameters.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError
from ..fuse import fuse_for_inference
from ..runtime import channels_last_default
from .analyze import _use_agg, write_outputs
from .summary import summarize


@torch.no_grad()
def inference_speed(
    model: nn.Module, input_size: tuple[int, int, int], batch_size: int = 16, min_seconds: float = 1.0
) -> float:
    """Images per second of the model as ``cnnlab eval`` runs it (fp32, BatchNorm folded, this
    machine's layout), on synthetic inputs: one warm-up batch, then the median of timed batches (at
    least 3, or ``min_seconds`` worth)."""
    model = fuse_for_inference(model, channels_last=channels_last_default(torch.device("cpu")))
    x = torch.randn(batch_size, *input_size)
    model(x)
    times: list[float] = []
    while len(times) < 3 or sum(times) < min_seconds:
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


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
    batch_size: int = 16,
    live: bool | None = None,
    quiet: bool = False,
    **train_options: Any,
) -> dict[str, Any]:
    """One row per model; with ``train`` each is trained on ``data`` for ``epochs`` (into
    ``out_dir/runs/<model>``) and the costs are those of the data's input size and classes."""
    from ..models import create_model

    _use_agg()
    if len(set(models)) != len(models) or not models:
        raise CnnlabError(f"compare takes one or more distinct models, got {' '.join(models)}")
    if train:
        from ..data import load

        ds = load(data, root=train_options.get("data_root"), image_size=image_size)
        given = input_size
        input_size, num_classes = (ds.in_chans, *ds.image_size), ds.num_classes
        if given is not None and tuple(given) != input_size:
            raise CnnlabError(
                f"with --train the input is the data's, {'x'.join(map(str, input_size))}; "
                "resize it with --image-size instead of --input"
            )
    elif input_size is None:
        defaults = {name: summarize(name)["input"] for name in models}
        if len({tuple(v) for v in defaults.values()}) > 1:
            listed = ", ".join(f"{n} {'x'.join(map(str, v))}" for n, v in defaults.items())
            raise CnnlabError(f"the models take different inputs ({listed}): choose one with --input")
        input_size = tuple(next(iter(defaults.values())))  # type: ignore[assignment]
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
            "images_per_s": round(inference_speed(model, input_size, batch_size), 1),
        }
        del model
        if train:
            from ..train import TrainConfig, fit

            run_dir = Path(out_dir) / "runs" / name
            config = TrainConfig(
                model=name, data=data, epochs=epochs, seed=seed, out=str(run_dir), image_size=image_size,
                **train_options,
            )  # fmt: skip
            result = fit(config, live=live, quiet=quiet)
            row.update(
                test_acc=result["test_acc"],
                train_time_s=result["train_time_s"],
                train_images_per_s=result["images_per_s"],
                run_dir=str(run_dir),
            )
        rows.append(row)
    result = {
        "input": list(input_size),
        "num_classes": num_classes,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "trained": train,
        "models": rows,
    }
    if train:
        result.update(data=data, epochs=epochs, seed=seed)
    result["files"] = write_outputs(out_dir, "compare", result, plot_compare(result))
    return result


def plot_compare(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

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
