"""EfficientNet's compound scaling (Tan and Le 2019, Section 3.3) against the released B0-B7.

For phi = 0..7, Eq. 3's exact multipliers ``(alpha**phi, beta**phi, gamma**phi)`` (depth, width,
resolution; ``models.efficientnet.compound_scaling``) next to the (depth, width, resolution) each
variant was released with, and the parameters and MACs of each variant at its own resolution. The
paper picks ``alpha beta^2 gamma^2 ~ 2`` so that MACs grow about 2^phi; the released variants round
the multipliers (and the channels, and the layers per stage), so their growth differs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from ..errors import CnnlabError
from ..models import create_model
from ..models.efficientnet import compound_scaling
from ..plots import pyplot
from .costs import count_macs
from .output import DEFAULT_OUT, write_outputs


def scaling_table(phis: Iterable[int] = range(8)) -> dict[str, Any]:
    """One row per phi (0..7): the multipliers from Eq. 3, the released ones, and B<phi>'s parameters
    and MACs at its own resolution (``macs_vs_b0`` needs phi 0 among ``phis``)."""
    rows = []
    for phi in phis:
        depth, width, res = compound_scaling(phi)
        with torch.device("meta"):
            model = create_model(f"efficientnet_b{phi}")
        size = model.default_input_size
        rows.append(
            {
                "phi": phi,
                "model": f"efficientnet_b{phi}",
                "depth_mult": depth,
                "width_mult": width,
                "resolution_mult": res,
                "resolution_eq3": 224 * res,
                "released_depth": model.depth_mult,
                "released_width": model.width_mult,
                "released_resolution": size[1],
                "blocks": sum(model.stage_depths),
                "params": sum(p.numel() for p in model.parameters()),
                "macs": count_macs(model, size),
                "flops_factor_eq3": (depth * width**2 * res**2),
            }
        )
    base = next((r["macs"] for r in rows if r["phi"] == 0), None)
    for r in rows:
        r["macs_vs_b0"] = r["macs"] / base if base else None
    return {
        "alpha": compound_scaling(1)[0],
        "beta": compound_scaling(1)[1],
        "gamma": compound_scaling(1)[2],
        "rows": rows,
    }


def plot_scaling(result: dict[str, Any]) -> Any:
    """MACs of B0-B7 against phi (log scale) with B0 x 2^phi and B0 x (alpha beta^2 gamma^2)^phi."""
    plt = pyplot()

    rows = result["rows"]
    phis = [r["phi"] for r in rows]
    base = rows[0]["macs"] / 1e9
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ax.semilogy(phis, [r["macs"] / 1e9 for r in rows], "o-", label="released B0-B7 (measured)")
    ax.semilogy(
        phis,
        [base * r["flops_factor_eq3"] for r in rows],
        "s--",
        label="B0 x (alpha beta² gamma²)^phi, Eq. 3",
    )
    ax.semilogy(phis, [base * 2**p for p in phis], ":", color="gray", label="B0 x 2^phi (the paper's aim)")
    for r in rows:
        ax.annotate(
            f"B{r['phi']}",
            (r["phi"], r["macs"] / 1e9),
            textcoords="offset points",
            xytext=(-4, 7),
            fontsize=8,
        )
    ax.set_xlabel("phi")
    ax.set_ylabel("GMACs (log scale)")
    ax.set_title("EfficientNet compound scaling: MACs at each variant's own resolution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def analyze_scaling(out_dir: str | os.PathLike[str] = DEFAULT_OUT, max_phi: int = 7) -> dict[str, Any]:
    """EfficientNet's compound scaling for phi = 0..max_phi against the released variants; writes
    scaling.json and scaling.png."""
    if not 0 <= max_phi <= 7:
        raise CnnlabError(f"--max-phi must be 0..7 (B0-B7), got {max_phi}")
    result = scaling_table(range(max_phi + 1))
    result["files"] = write_outputs(out_dir, "scaling", result, plot_scaling(result))
    return result
