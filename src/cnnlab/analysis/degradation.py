"""The degradation problem (He et al., "Deep Residual Learning for Image Recognition", 2016, Fig. 1
and 6): a deeper plain network ends with a higher *training* error than a shallower one, so the
problem is optimization, not overfitting; the residual twins of the same depths do not degrade.

``degradation`` trains the plain and residual CIFAR networks of each depth on the same data, seed
and budget (``cnnlab train``'s recipe), plots their training and test error per epoch and states
both halves of the claim. What differs from the paper: a budget of minutes, not 64k iterations, and
by default the embedded mnist5k digits rather than CIFAR-10.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ..models import list_models
from ..plots import pyplot
from ..rundir import read_metrics
from .output import write_outputs

DEFAULT_DEPTHS = (20, 56)
DEFAULT_EPOCHS = 10  # about 7 minutes for depths 20 and 56 on mnist5k on 2 cores


def twin_names(depths: list[int]) -> list[tuple[int, str, str]]:
    """(depth, plain, residual) model names, checked to be registered."""
    if len(depths) < 2 or sorted(set(depths)) != list(depths):
        raise CnnlabError(f"--depths needs at least two increasing depths, e.g. 20,56; got {depths}")
    known = set(list_models())
    out = []
    for d in depths:
        plain, residual = f"plain{d}", f"resnet{d}"
        if plain not in known or residual not in known:
            have = sorted(int(m[5:]) for m in known if m.startswith("plain") and m[5:].isdigit())
            raise CnnlabError(f"no plain/residual twins of depth {d}; depths: {', '.join(map(str, have))}")
        out.append((d, plain, residual))
    return out


def degradation(
    data: str = "mnist5k",
    depths: tuple[int, ...] | list[int] = DEFAULT_DEPTHS,
    epochs: int = DEFAULT_EPOCHS,
    out_dir: str | os.PathLike[str] = "degradation",
    seed: int = 0,
    data_root: str | None = None,
    live: bool | None = None,
    quiet: bool = False,
    **train_options: Any,
) -> dict[str, Any]:
    """Train every twin into ``out_dir/runs/<model>``, then write degradation.json and .png.
    ``train_options`` are further TrainConfig fields (batch_size, lr, precision, ...)."""
    from ..train import TrainConfig, fit

    depths = list(depths)
    twins = twin_names(depths)
    out = Path(out_dir)
    runs: dict[str, dict[str, Any]] = {}
    models = [
        (d, kind, name) for d, plain, res in twins for kind, name in (("plain", plain), ("residual", res))
    ]
    for i, (depth, kind, name) in enumerate(models, 1):
        if not quiet:
            print(f"[{i}/{len(models)}] {kind} network of depth {depth}", flush=True)
        run_dir = out / "runs" / name
        config = TrainConfig(
            model=name,
            data=data,
            data_root=data_root,
            epochs=epochs,
            seed=seed,
            out=str(run_dir),
            **train_options,
        )
        result = fit(config, live=live, quiet=quiet)
        rows = read_metrics(run_dir / "metrics.csv")
        runs[name] = {
            "depth": depth, "kind": kind, "run_dir": str(run_dir), "params": result["params"],
            "train_error": [1 - r["train_acc"] for r in rows],
            "test_error": [1 - r["test_acc"] for r in rows],
            "train_time_s": result["train_time_s"], "dataset": result["dataset"],
        }  # fmt: skip
    result = verdict(runs, twins)
    result.update({"data": runs[models[0][2]]["dataset"], "epochs": epochs, "seed": seed, "depths": depths})
    result["files"] = write_outputs(out, "degradation", result, plot_degradation(result))
    return result


def verdict(runs: dict[str, dict[str, Any]], twins: list[tuple[int, str, str]]) -> dict[str, Any]:
    """The claim as two booleans, on the final epoch's training error of the shallowest and deepest."""
    (d0, plain0, res0), (d1, plain1, res1) = twins[0], twins[-1]

    def final(name: str) -> float:
        return runs[name]["train_error"][-1]

    return {
        "runs": runs,
        "final_train_error": {name: final(name) for name in runs},
        "final_test_error": {name: r["test_error"][-1] for name, r in runs.items()},
        "deeper_plain_higher_train_error": final(plain1) > final(plain0),
        "deeper_residual_not_higher_train_error": final(res1) <= final(res0),
        "compared": f"depth {d1} against depth {d0}",
    }


def plot_degradation(r: dict[str, Any]) -> Any:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", sharey=True)
    runs = r["runs"]
    depths = sorted({v["depth"] for v in runs.values()})
    shades = plt.cm.viridis([0.15 + 0.7 * i / max(1, len(depths) - 1) for i in range(len(depths))])
    colors = dict(zip(depths, shades, strict=True))
    for ax, kind in zip(axes, ("plain", "residual"), strict=True):
        for name, v in runs.items():
            if v["kind"] != kind:
                continue
            epochs = range(1, len(v["train_error"]) + 1)
            c = colors[v["depth"]]
            ax.plot(epochs, [100 * e for e in v["train_error"]], "--", color=c, label=f"{name} train")
            ax.plot(
                epochs, [100 * e for e in v["test_error"]], "-", color=c, linewidth=2, label=f"{name} test"
            )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        holds = r[
            "deeper_plain_higher_train_error" if kind == "plain" else "deeper_residual_not_higher_train_error"
        ]
        claim = "deeper trains worse" if kind == "plain" else "deeper trains no worse"
        ax.set_title(f"{kind} networks on {r['data']}: {claim}: {'yes' if holds else 'no'}", fontsize=10)
    axes[0].set_ylabel("error (%), dashed: training, solid: test")
    return fig
