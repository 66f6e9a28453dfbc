"""The analyses behind ``cnnlab analyze``: each computes its numbers, draws its figure and writes
``<name>.json`` and ``<name>.png`` into an output directory, and returns the numbers.

* ``analyze_rf``: theoretical receptive field and stride per layer, the effective receptive field as a
  heat map, and the VGG comparison of three 3x3 convs with one 7x7.
* ``analyze_inception``: GoogLeNet's Inception modules with and without their 1x1 reductions.
* ``analyze_scaling``: EfficientNet's compound scaling against the released B0-B7.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CnnlabError, InputSizeError

DEFAULT_OUT = "analysis"


def write_outputs(
    out_dir: str | os.PathLike[str], name: str, result: dict[str, Any], fig: Any
) -> dict[str, str]:
    """Write ``<name>.json`` and ``<name>.png`` (closing the figure); returns their paths."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out / f"{name}.json"), "png": str(out / f"{name}.png")}
    Path(paths["json"]).write_text(json.dumps(result, indent=2) + "\n")
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")


def _images(
    data: str | None, n: int, input_size: tuple[int, int, int], run_dir: str | None = None
) -> tuple[torch.Tensor, str]:
    """``n`` normalized test images: of a run's dataset (or ``data``) as the run saw them, of ``data``
    resized to ``input_size``, or standard normal noise when there is neither."""
    c, h, w = input_size
    if run_dir is not None:
        from ..predict import run_dataset
        from ..rundir import read_config

        ds = run_dataset(run_dir, data)
        cfg = read_config(run_dir).data
        mean, std = cfg.mean, cfg.std
    elif data is None:
        return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0)), "noise"
    else:
        from ..data import load

        ds = load(data)
        mean, std = ds.mean, ds.std
    x = ds.test_images[:n].float() / 255
    if tuple(x.shape[-2:]) != (h, w):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    if x.shape[1] != c:  # e.g. grey digits into a 3-channel model
        x = x.mean(1, keepdim=True).expand(-1, c, -1, -1).contiguous()
    return x, ds.name


def analyze_rf(
    model_name: str,
    input_size: tuple[int, int, int] | None = None,
    data: str | None = None,
    images: int = 8,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    seed: int = 0,
    channels: int = 64,
) -> dict[str, Any]:
    """Receptive fields of ``model_name`` (a registered model, freshly initialized with ``seed``, or a
    run directory, whose trained weights, input size and dataset are used)."""
    _use_agg()
    from ..models import create_model
    from .costs import model_costs
    from .rf import effective_receptive_field, rf_window, vgg_comparison

    if images < 1:
        raise CnnlabError(f"--images must be at least 1, got {images}")

    run_dir = model_name if Path(model_name).is_dir() else None
    if run_dir is not None:
        from ..rundir import load_run

        model = load_run(model_name)
        cfg = model.data_config  # type: ignore[attr-defined]
        if input_size is not None and list(input_size) != cfg.input_size:
            raise InputSizeError(f"the model of {run_dir} takes {'x'.join(map(str, cfg.input_size))} images")
        input_size = tuple(cfg.input_size)  # type: ignore[assignment]
        label = f"{cfg.name}-trained {model_name}"
    else:
        torch.manual_seed(seed)
        with torch.device("meta"):
            probe = create_model(model_name, in_chans=input_size[0] if input_size else 3)
        input_size = input_size or probe.default_input_size
        min_size = getattr(probe, "min_input_size", 1)
        if min(input_size[1:]) < min_size:  # before building the real, possibly large, model
            raise InputSizeError(
                f"{model_name} needs inputs of at least {min_size}x{min_size}, "
                f"got {input_size[1]}x{input_size[2]}"
            )
        model = create_model(model_name, in_chans=input_size[0])
        label = f"freshly initialized {model_name}"

    # Costs and theoretical RFs on a meta copy: shapes only, no compute.
    costs = model_costs(copy.deepcopy(model).to("meta"), input_size)
    layers = [
        {"name": name, "receptive_field": c["rf"].size, "stride": c["rf"].stride, "macs": c["macs"]}
        for name, c in costs["layers"].items()
        if c["rf"].spatial
    ]
    x, source = _images(data, images, input_size, run_dir)
    erf, rf, centre, fmap_hw = effective_receptive_field(model, x.to(next(model.parameters()).device))
    erf = erf.detach().cpu()
    unit_px = (rf.start[0] + centre[0] * rf.jump[0], rf.start[1] + centre[1] * rf.jump[1])
    result = {
        "model": model_name,
        "weights": label,
        "input": list(input_size),
        "receptive_field": rf.size,
        "stride": rf.stride,
        "macs": costs["macs"],
        "feature_map": list(fmap_hw),
        "centre_unit": list(centre),
        "centre_unit_px": list(unit_px),
        "effective": {
            "images": source,
            "count": int(x.shape[0]),
            "half_mass_side": _half_mass_side(erf, unit_px),
        },
        "layers": layers,
        "vgg": vgg_comparison(channels),
    }
    window = rf_window(rf, centre)
    fig = _plot_erf(erf, window, result)
    result["files"] = write_outputs(out_dir, "rf", result, fig)
    return result


def _half_mass_side(erf: torch.Tensor, centre: tuple[float, float]) -> int:
    """The side of the smallest square around ``centre`` (the unit's position in input pixels) that
    holds half the ERF's mass: how much smaller the effective RF is than the theoretical one."""
    h, w = erf.shape
    cy, cx = centre
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dist = torch.maximum((yy - cy).abs(), (xx - cx).abs()).flatten()  # Chebyshev: squares
    order = dist.argsort()
    mass = erf.flatten()[order].double().cumsum(0)
    i = int(torch.searchsorted(mass, mass[-1] / 2))
    return int(2 * dist[order][min(i, len(order) - 1)].floor().item() + 1)


def _plot_erf(erf: torch.Tensor, window: tuple[float, float, float, float], result: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained", width_ratios=(1, 1))
    im = ax.imshow((erf / erf.max().clamp_min(1e-30)).numpy(), cmap="inferno", vmin=0)
    top, left, height, width = window
    ax.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5),
            width,
            height,
            fill=False,
            edgecolor="cyan",
            linewidth=1.5,
            label=f"theoretical RF {result['receptive_field']}x{result['receptive_field']}",
        )
    )
    h, w = erf.shape
    cy, cx = result["centre_unit_px"]
    ax.plot([cx], [cy], "+", color="cyan", markersize=10)
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="gray", linestyle=":", label="input"))
    margin = 0.04 * max(h, w, height, width)
    ax.set_xlim(min(-0.5, left - 0.5) - margin, max(w - 0.5, left + width - 0.5) + margin)
    ax.set_ylim(max(h - 0.5, top + height - 0.5) + margin, min(-0.5, top - 0.5) - margin)
    ax.set_facecolor("#e8e8e8")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="|d centre unit / d input|, relative to its maximum")
    e = result["effective"]
    ax.set_title(
        f"{result['model']}: effective RF of the centre unit of the\nlast {result['feature_map'][0]}x"
        f"{result['feature_map'][1]} map ({e['count']} {e['images']} images; "
        f"half mass in {e['half_mass_side']} px)",
        fontsize=9,
    )
    layers = [lay for lay in result["layers"] if lay["stride"] is not None]
    bx.step(
        range(len(layers)), [lay["receptive_field"] for lay in layers], where="post", label="receptive field"
    )
    bx.step(range(len(layers)), [lay["stride"] for lay in layers], where="post", label="stride (jump)")
    bx.set_yscale("log")
    bx.set_xlabel("leaf layers in execution order (dips: side branches)")
    bx.set_ylabel("input pixels")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend()
    v = result["vgg"]["stacks"]
    bx.set_title(
        f"theoretical RF per layer; VGG: {v[0]['stack']} = {v[0]['weights_per_c2']:g}C² weights, RF "
        f"{v[0]['receptive_field']}\nvs {v[1]['stack']} = {v[1]['weights_per_c2']:g}C², "
        f"RF {v[1]['receptive_field']}",
        fontsize=9,
    )
    return fig


def analyze_inception(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT, image_size: int = 224, five_kernel: int = 3
) -> dict[str, Any]:
    """GoogLeNet's Inception modules with and without their 1x1 reductions; the "5x5" branch counted
    with ``five_kernel`` (3 as built, 5 as in the paper)."""
    _use_agg()
    from .inception import inception_costs, plot_inception

    result = inception_costs(image_size, five_kernel)
    result["files"] = write_outputs(out_dir, "inception", result, plot_inception(result))
    return result


def analyze_scaling(out_dir: str | os.PathLike[str] = DEFAULT_OUT, max_phi: int = 7) -> dict[str, Any]:
    """EfficientNet's compound scaling for phi = 0..max_phi against the released variants."""
    _use_agg()
    from .scaling import plot_scaling, scaling_table

    if not 0 <= max_phi <= 7:
        raise CnnlabError(f"--max-phi must be 0..7 (B0-B7), got {max_phi}")
    result = scaling_table(range(max_phi + 1))
    result["files"] = write_outputs(out_dir, "scaling", result, plot_scaling(result))
    return result
