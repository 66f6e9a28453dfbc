"""`cnnlab analyze cam`, `filters` and `features`: what a trained run's CNN looks at and has learned
(cnnlab.analysis.inside). A module of its own, registered by analyze.py's `add`."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from .analyze import _analysis
from .common import print_files, wide_console


def add(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "cam",
        run_cam,
        show_cam,
        "Grad-CAM and saliency maps: where a trained model finds its class in images (Selvaraju et al. 2017)",
        "For a run directory and image files, each converted and resized to the run's input as for predict. ",
    )
    a.add_argument("run_dir")
    a.add_argument("images", nargs="+", metavar="IMAGE")
    a.add_argument("--layer", help="the module to take the CAM at (default: the last convolutional stage)")
    a.add_argument("--class", dest="target", metavar="NAME", help="also the CAM of this class of the run")
    a = _analysis(
        analyses,
        "filters",
        run_filters,
        show_filters,
        "a trained run's first-layer filters beside their initial values",
        "The initial values are rebuilt from the run's seed; a converted or fine-tuned run has none. ",
    )
    a.add_argument("run_dir")
    a = _analysis(
        analyses,
        "features",
        run_features,
        show_features,
        "a trained run's feature maps at each stage for one image, the most active channels",
    )
    a.add_argument("run_dir")
    a.add_argument("image", help="an image file; converted and resized to the run's input as for predict")


def run_cam(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.inside import analyze_cam

    return analyze_cam(args.run_dir, args.images, layer=args.layer, target=args.target, out_dir=args.out)


def show_cam(r: dict[str, Any], args: argparse.Namespace) -> None:
    console = wide_console()
    console.print(
        f"{r['model']}: Grad-CAM at {r['layer']} ({'x'.join(map(str, r['layer_shape']))}"
        f"{', the last convolutional stage' if r['layer_default'] else ''}); peaks in input px (y, x)",
        highlight=False,
    )
    table = Table()
    columns = ["image", "top class", "prob", "CAM peak"]
    if r["class"] is not None:
        columns += [f"p({r['class']})", f"{r['class']} CAM peak"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("image", "top class") else "right")

    def peak(p: list[int] | None) -> str:
        return "none (zero)" if p is None else f"{p[0]}, {p[1]}"

    for row in r["images"]:
        cells = [row["image"], row["top_class"], f"{100 * row['top_prob']:.1f}%", peak(row["cam_peak"])]
        if r["class"] is not None:
            cells += [f"{100 * row['class_prob']:.1f}%", peak(row["class_cam_peak"])]
        table.add_row(*cells)
    console.print(table)
    print_files(console, r)


def run_filters(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.inside import analyze_filters

    return analyze_filters(args.run_dir, out_dir=args.out)


def show_filters(r: dict[str, Any], args: argparse.Namespace) -> None:
    console = wide_console()
    norms = r["norms"]
    text = (
        f"{r['model']}: first convolution {r['layer']}, weight {'x'.join(map(str, r['weight_shape']))}; "
        f"mean filter norm {sum(norms['trained']) / len(norms['trained']):.3f} trained"
    )
    if r["initial_available"]:
        text += (
            f", {sum(norms['initial']) / len(norms['initial']):.3f} initial; mean cosine similarity of "
            f"each trained filter with its initial value {r['mean_cosine']:.3f}"
        )
    else:
        text += f"; {r['initial_note']}"
    console.print(text, highlight=False)
    print_files(console, r)


def run_features(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.inside import analyze_features

    return analyze_features(args.run_dir, args.image, out_dir=args.out)


def show_features(r: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title=f"{r['model']} on {r['image']}: one stage per resolution")
    for col in ("stage", "shape", "mean", "max", "channels shown"):
        table.add_column(col, justify="left" if col in ("stage", "channels shown") else "right")
    for s in r["stages"]:
        table.add_row(
            s["name"],
            "x".join(map(str, s["shape"])),
            f"{s['mean']:.3f}",
            f"{s['max']:.3f}",
            ", ".join(map(str, s["shown_channels"])),
        )
    console = wide_console()
    console.print(table)
    print_files(console, r)
