"""`cnnlab analyze WHAT`: each analysis writes WHAT.json and WHAT.png and prints a short table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from ..analysis.output import DEFAULT_OUT
from ..text import si
from .common import JSON, SEED, Parser, print_files, seed_int, wide_console


def _analysis(
    analyses: Any,
    name: str,
    run: Any,
    show: Any,
    help: str,
    about: str = "",
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """A sub-command with what every analysis takes: --out, --json, and its handler and printer."""
    a = analyses.add_parser(
        name, parents=[JSON, *parents], help=help, description=f"{about}Writes {name}.json and {name}.png."
    )
    a.add_argument(
        "--out", default=DEFAULT_OUT, help=f"directory for the .json and .png (default ./{DEFAULT_OUT})"
    )
    a.set_defaults(func=run, show=show)
    return a


def _add_rf(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "rf",
        run_rf,
        show_rf,
        "theoretical receptive field per layer, effective receptive field heat map, VGG's 3x3 argument",
        "Receptive fields of a fresh registered model or of a run directory's trained model. ",
    )
    a.add_argument("model", help="a registered model or a run directory")
    a.add_argument("--input", help="CxHxW (default: the model's usual input, or the run's)")
    # Not the DATA parent: without a run, no --data means noise, and there is no --data-root.
    a.add_argument(
        "--data", help="images for the effective RF: a dataset name or path (default: noise; a run's data)"
    )
    a.add_argument("--images", type=int, default=8, help="how many images to average over (default 8)")
    # Not the SEED parent: this --seed has a help of its own, which --help shows.
    a.add_argument("--seed", type=seed_int, default=0, help="initialization seed of a fresh model")


def run_rf(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.rf import analyze_rf
    from ..analysis.summary import parse_input

    return analyze_rf(
        args.model,
        parse_input(args.input) if args.input else None,
        data=args.data,
        images=args.images,
        out_dir=args.out,
        seed=args.seed,
    )


def show_rf(r: dict[str, Any], args: argparse.Namespace) -> None:
    console = wide_console()
    e = r["effective"]
    console.print(
        f"{r['model']} at {'x'.join(map(str, r['input']))} ({r['weights']}): theoretical receptive field "
        f"{r['receptive_field']}x{r['receptive_field']} px, stride {r['stride']}, of the last "
        f"{r['feature_map'][0]}x{r['feature_map'][1]} feature map; effective: half of the gradient "
        f"mass of its centre unit lies within {e['half_mass_side']}x{e['half_mass_side']} px "
        f"({e['count']} {e['images']} images)",
        highlight=False,
    )
    table = Table(title=f"VGG's argument, C = {r['vgg']['channels']} channels")
    for col in ("stack", "weights", "per C²", "receptive field"):
        table.add_column(col, justify="left" if col == "stack" else "right")
    for row in r["vgg"]["stacks"]:
        table.add_row(
            row["stack"], f"{row['weights']:,}", f"{row['weights_per_c2']:g}C²", str(row["receptive_field"])
        )
    console.print(table)
    print_files(console, r)


def _add_inception(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "inception",
        run_inception,
        show_inception,
        "MACs and parameters of GoogLeNet's Inception modules with and without 1x1 reductions",
    )
    a.add_argument("--image-size", type=int, default=224, help="GoogLeNet's input side (default 224)")
    a.add_argument(
        "--five-kernel",
        type=int,
        choices=(3, 5),
        default=3,
        help='kernel of the "5x5" branch: 3 as torchvision and cnnlab build it (default), 5 as in the paper',
    )


def run_inception(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.inception import analyze_inception

    return analyze_inception(out_dir=args.out, image_size=args.image_size, five_kernel=args.five_kernel)


def show_inception(r: dict[str, Any], args: argparse.Namespace) -> None:
    k = r["five_kernel"]
    table = Table(
        title=f"GoogLeNet at {r['image_size']}x{r['image_size']}: Inception modules with and without "
        f'1x1 reductions ("5x5" branch counted as {k}x{k}{", as built" if k == 3 else ""})'
    )
    for col in ("module", "input", "MACs", "MACs without", "ratio", "params", "params without", "ratio "):
        table.add_column(col, justify="left" if col == "module" else "right")
    for m in r["modules"]:
        table.add_row(
            m["module"],
            "x".join(map(str, m["input"])),
            si(m["macs"]),
            si(m["macs_without"]),
            f"{m['macs_ratio']:.2f}",
            f"{m['params']:,}",
            f"{m['params_without']:,}",
            f"{m['params_ratio']:.2f}",
        )
    console = wide_console()
    console.print(table)
    console.print(
        f"all nine: {si(r['macs'])} MACs with the reductions, {si(r['macs_without'])} without "
        f"(x{r['macs_ratio']:.2f})",
        highlight=False,
    )
    print_files(console, r)


def _add_scaling(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "scaling",
        run_scaling,
        show_scaling,
        "EfficientNet's compound scaling for phi = 0..7 against the released B0-B7",
    )
    a.add_argument("--max-phi", type=int, default=7, help="the last phi (default 7: B0-B7)")


def run_scaling(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.scaling import analyze_scaling

    return analyze_scaling(out_dir=args.out, max_phi=args.max_phi)


def show_scaling(r: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(
        title=f"EfficientNet compound scaling: alpha={r['alpha']:g} (depth), beta={r['beta']:g} (width), "
        f"gamma={r['gamma']:g} (resolution)"
    )
    for col in (
        "phi",
        "depth",
        "width",
        "res",
        "released d/w/res",
        "blocks",
        "params",
        "MACs",
        "vs B0",
        "2^phi",
    ):
        table.add_column(col, justify="right")
    for row in r["rows"]:
        table.add_row(
            str(row["phi"]),
            f"{row['depth_mult']:.3f}",
            f"{row['width_mult']:.3f}",
            f"{row['resolution_mult']:.3f} ({row['resolution_eq3']:.0f})",
            f"{row['released_depth']:g}/{row['released_width']:g}/{row['released_resolution']}",
            str(row["blocks"]),
            f"{row['params']:,}",
            si(row["macs"]),
            f"{row['macs_vs_b0']:.2f}",
            f"{2 ** row['phi']}",
        )
    console = wide_console()
    console.print(table)
    print_files(console, r)


def _add_templates(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "templates",
        run_templates,
        show_templates,
        "a trained linear classifier's class templates beside the class means",
        "For a run of `--model linear`. ",
    )
    a.add_argument("run_dir")


def run_templates(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.templates import analyze_templates

    return analyze_templates(args.run_dir, out_dir=args.out)


def show_templates(r: dict[str, Any], args: argparse.Namespace) -> None:
    console = wide_console()
    own = ", ".join(f"{c} {v:.2f}" for c, v in r["correlation_with_own_mean"].items())
    console.print(
        f"correlation of each class template with its class's mean image: {own}\n"
        f"mean {r['mean_correlation_own']:.2f} with its own class, "
        f"{r['mean_correlation_other']:.2f} with the others; its own class's mean is the best match for "
        f"{100 * r['own_mean_is_best_match']:.0f}% of classes",
        highlight=False,
    )
    print_files(console, r)


def _add_knn(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "knn",
        run_knn,
        show_knn,
        "k-NN accuracy against k, and query time against the stored set's size",
    )
    # Not the DATA parent: here --data has a default of its own.
    a.add_argument("--data", default="mnist5k", help="a dataset name or path (default mnist5k)")
    a.add_argument("--data-root")


def run_knn(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.knn import analyze_knn

    return analyze_knn(args.data, out_dir=args.out, data_root=args.data_root)


def show_knn(r: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title=f"k-NN on {r['dataset']}: test accuracy against k")
    table.add_column("k", justify="right")
    for metric in r["accuracy"]:
        table.add_column(metric, justify="right")
    for k in next(iter(r["accuracy"].values())):
        table.add_row(k, *(f"{100 * acc[k]:.1f}%" for acc in r["accuracy"].values()))
    console = wide_console()
    console.print(table)
    t, fit = r["timing"], r["fit"]
    console.print(
        f"query time for {r['queries']} queries against {t['stored'][0]}..{t['stored'][-1]} stored images: "
        f"{', '.join(f'{s:.3f}s' for s in t['seconds'])}; linear fit "
        f"{1e6 * fit['slope_s_per_stored_sample']:.2f} us per stored image, R^2 {fit['r2']:.3f}",
        highlight=False,
    )
    print_files(console, r)


def _add_se(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "se",
        run_se,
        show_se,
        "a trained SE model's excitations per block, channel and class",
        "For a run of an se_* model. ",
    )
    a.add_argument("run_dir")


def run_se(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.se import analyze_se

    return analyze_se(args.run_dir, out_dir=args.out)


def show_se(r: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(title=f"{r['model']} on {r['dataset']}: SE excitations over {r['images']} test images")
    for col in ("block", "channels", "mean gate", "std", "class spread"):
        table.add_column(col, justify="left" if col == "block" else "right")
    for row in r["blocks"]:
        table.add_row(
            row["block"],
            str(row["channels"]),
            f"{row['mean']:.3f}",
            f"{row['std']:.3f}",
            f"{row['class_spread']:.3f}",
        )
    console = wide_console()
    console.print(table)
    print_files(console, r)


def _point(text: str) -> tuple[int, int]:
    """``--point Y,X``: a unit of the top deformable layer's output map."""
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y,X (two integers), got {text!r}") from None
    return y, x


def _add_offsets(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "offsets",
        run_offsets,
        show_offsets,
        "a trained deformable model's sampling points for chosen units, over an image (Dai et al. 2017)",
        "For a run of a dcn_* model. ",
    )
    a.add_argument("run_dir")
    a.add_argument("image", help="an image file; converted and resized to the run's input as for predict")
    a.add_argument(
        "--point",
        type=_point,
        action="append",
        metavar="Y,X",
        help="a unit of the top deformable layer's output map (repeatable; default: the strongest "
        "activation, the centre and the weakest)",
    )
    a.add_argument(
        "--layers", type=int, default=3, help="how many deformable layers, counted from the top (default 3)"
    )


def run_offsets(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.offsets import analyze_offsets

    return analyze_offsets(args.run_dir, args.image, out_dir=args.out, points=args.point, layers=args.layers)


def show_offsets(r: dict[str, Any], args: argparse.Namespace) -> None:
    names = [lay["name"] for lay in r["layers"]]
    console = wide_console()
    console.print(
        f"{r['model']} on {r['image']}: {r['samples_per_point']} sampling points per unit through "
        f"{', '.join(names)} (offsets bottom to top); distances in image px; centroid: how far the "
        "learned points' centroid moved from the regular grid's",
        highlight=False,
    )
    table = Table()
    for col in ("unit", "why", "at px", "mean offset", "spread", "regular", "ratio", "centroid", "outside"):
        table.add_column(col, justify="left" if col in ("unit", "why") else "right")
    for p in r["points"]:
        table.add_row(
            f"{p['point'][0]},{p['point'][1]}",
            p["why"],
            f"{p['point_px'][0]:g},{p['point_px'][1]:g}",
            " / ".join(f"{lay['mean_offset_image_px']:.2f}" for lay in p["layers"]),
            f"{p['spread_px']:.2f}",
            f"{p['regular_spread_px']:.2f}",
            f"{p['spread_ratio']:.2f}",
            "{:+.1f}, {:+.1f}".format(*p["centroid_shift_px"]),
            f"{100 * p['outside_image']:.0f}%",
        )
    console.print(table)
    print_files(console, r)


def _add_paths(analyses: Any) -> None:
    a = _analysis(
        analyses,
        "paths",
        run_paths,
        show_paths,
        "residual networks as ensembles of paths: path lengths, lesion study, gradient per path length",
        "Veit et al. 2016. A run directory gets the lesion study; a registered model, fresh, only the "
        "path lengths and gradients. ",
        parents=(SEED,),
    )
    a.add_argument("model", help="a run directory of a ResNet, or a registered ResNet (fresh weights)")
    a.add_argument(
        "--plain", metavar="RUN_DIR", help="a run of the plain twin: delete its blocks for contrast"
    )
    # Not the DATA parent: a run uses its own data, and there is no --data-root.
    a.add_argument("--data", help="images for a fresh model (default mnist5k); a run uses its own")
    a.add_argument("--samples", type=int, default=5, help="sampled paths per length and batch (default 5)")
    a.add_argument(
        "--lesion-samples", type=int, default=10, help="random draws for each k blocks deleted (default 10)"
    )
    a.add_argument("--images", type=int, default=1000, help="test images for the lesion study (default 1000)")


def run_paths(args: argparse.Namespace) -> dict[str, Any]:
    from ..analysis.paths import analyze_paths

    return analyze_paths(
        args.model,
        plain=args.plain,
        data=args.data,
        out_dir=args.out,
        samples=args.samples,
        lesion_samples=args.lesion_samples,
        images=args.images,
        seed=args.seed,
    )


def show_paths(r: dict[str, Any], args: argparse.Namespace) -> None:
    console = wide_console()
    g = r["gradient"]
    lo, hi = g["effective_lengths"]
    console.print(
        f"{r['model']} ({'trained' if r['trained'] else 'untrained'}): {r['blocks']} residual blocks, "
        f"2^{r['blocks']} = {r['paths']:,} paths, lengths Binomial({r['blocks']}, 1/2) with mean "
        f"{g['path_mean_length']:g}; a path's gradient changes by x{g['decay_per_block']:.2f} per block, "
        f"and 90% of the total gradient comes from paths of length {lo}-{hi} (mean "
        f"{g['gradient_mean_length']:.1f})",
        highlight=False,
    )
    if "lesion" in r:
        les = r["lesion"]
        table = Table(title=f"lesion study on {les['images']} test images: accuracy with one block deleted")
        table.add_column("block")
        table.add_column(r["model"], justify="right")
        twin = r.get("plain")
        if twin:
            table.add_column(twin["model"], justify="right")
        table.add_row(
            "(none)", f"{100 * les['baseline']:.2f}%", *([f"{100 * twin['baseline']:.2f}%"] if twin else [])
        )
        for i, row in enumerate(les["single"]):
            name = row["block"] + (" (downsampling)" if row["downsampling"] else "")
            cells = [name, f"{100 * row['test_acc']:.2f}%"]
            if twin:
                cells.append(f"{100 * twin['single'][i]['test_acc']:.2f}%")
            table.add_row(*cells)
        console.print(table)
        console.print(
            "k random blocks deleted: "
            + ", ".join(
                f"k={row['k']} {100 * row['mean']:.1f}% (±{100 * row['std']:.1f})" for row in les["random"]
            ),
            highlight=False,
        )
    print_files(console, r)


def add(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="receptive fields, Inception, scaling, templates, k-NN, SE, paths, offsets, CAM, filters, "
        "features: numbers and figures",
        description="Each analysis writes NAME.json (the numbers) and NAME.png (the figure) into --out.",
    )
    analyses = p.add_subparsers(dest="analysis", required=True, parser_class=Parser, metavar="ANALYSIS")
    for add_analysis in (
        _add_rf, _add_inception, _add_scaling, _add_templates, _add_knn, _add_se, _add_paths, _add_offsets
    ):  # fmt: skip
        add_analysis(analyses)
    from .analyze_inside import add as add_inside  # here: that module imports this one's _analysis

    add_inside(analyses)
