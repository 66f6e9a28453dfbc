"""The analyses' part of docs/results.md: one short table per ``docs/figures/NAME.json`` that an analysis
wrote, keyed in ``ANALYSES`` by NAME (`render.py` puts them on the page)."""

from __future__ import annotations

from collections.abc import Callable

from render_format import Json, count, num, pct, table


def rf(d: Json) -> str:
    stacks = [
        [s["stack"], count(s["weights"]), f"{s['weights_per_c2']:g} C^2", s["receptive_field"]]
        for s in d["vgg"]["stacks"]
    ]
    summary = table(
        ["model", "input", "receptive field px", "stride", "effective RF (half the mass) px", "MACs"],
        [
            [
                d["model"],
                "x".join(map(str, d["input"])),
                d["receptive_field"],
                d["stride"],
                d["effective"]["half_mass_side"],
                count(d["macs"]),
            ]
        ],
    )
    return (
        summary
        + f"\n\nStacks at {d['vgg']['channels']} channels:\n\n"
        + table(["stack", "weights", "per C^2", "receptive field"], stacks)
    )


def inception(d: Json) -> str:
    rows = [
        [m["module"], count(m["macs"]), count(m["macs_without"]), f"x{m['macs_ratio']:.2f}"]
        for m in d["modules"]
    ]
    rows.append(["all nine", count(d["macs"]), count(d["macs_without"]), f"x{d['macs_ratio']:.2f}"])
    return f"At {d['image_size']}x{d['image_size']}.\n\n" + table(
        ["module", "MACs with 1x1 reductions", "MACs without", "without / with"], rows
    )


def scaling(d: Json) -> str:
    rows = []
    for r in d["rows"]:
        ratios = [f"{r['macs_vs_b0']:.2f}", f"{r['flops_factor_eq3']:.2f}", f"{2 ** r['phi']:g}"]
        rows.append(
            [r["model"], r["phi"], r["released_resolution"], count(r["params"]), count(r["macs"]), *ratios]
        )
    header = ["model", "phi", "resolution", "parameters", "MACs", "MACs / B0", "(a b^2 g^2)^phi", "2^phi"]
    return table(header, rows)


def templates(d: Json) -> str:
    rows = [[c, f"{d['correlation_with_own_mean'][c]:.3f}"] for c in d["classes"]]
    head = table(
        ["model", "data", "mean r with own class mean", "mean r with other means", "own mean best match"],
        [
            [
                d["model"],
                d["dataset"],
                f"{d['mean_correlation_own']:.3f}",
                f"{d['mean_correlation_other']:.3f}",
                pct(d["own_mean_is_best_match"], 0),
            ]
        ],
    )
    return head + "\n\n" + table(["class", "r with own class mean"], rows)


def knn(d: Json) -> str:
    metrics = list(d["accuracy"])
    ks = list(d["accuracy"][metrics[0]])
    rows = [[k] + [pct(d["accuracy"][m][k]) for m in metrics] for k in ks]
    fit, best = d["fit"], d["best"]
    text = f"{d['train_size']} stored, {d['queries']} queries on {d['dataset']}.\n\n"
    text += table(["k"] + [f"accuracy, {m}" for m in metrics], rows)
    text += "\n\n" + table(
        ["best", "query time per stored sample (s)", "R^2 of the linear fit"],
        [
            [
                f"{best['metric']}, k={best['k']}: {pct(best['accuracy'])}",
                f"{fit['slope_s_per_stored_sample']:.3g}",
                f"{fit['r2']:.2f}",
            ]
        ],
    )
    return text


def se(d: Json) -> str:
    rows = [[b["block"], b["channels"], f"{b['mean']:.3f}", f"{b['class_spread']:.3f}"] for b in d["blocks"]]
    head = f"{d['model']} on {d['dataset']}, {d['images']} test images.\n\n"
    return head + table(["block", "channels", "mean gate", "std across classes of the mean gate"], rows)


def compare(d: Json) -> str:
    rows = []
    for m in d["models"]:
        trained = [pct(m["test_acc"]), num(m["train_time_s"])] if d.get("trained") else []
        cost = [count(m["params"]), count(m["macs"]), m["receptive_field"], num(m["images_per_s"], 0)]
        rows.append([m["model"], *cost, *trained])
    header = ["model", "parameters", "MACs", "receptive field", "inference images/s"]
    header += ["test accuracy", "training s"] if d.get("trained") else []
    shape = "x".join(map(str, d["input"]))
    head = f"Input {shape}, batch {d['batch_size']}, {d['threads']} threads"
    head += (
        f"; trained {d['epochs']} epochs on {d['data']}, seed {d['seed']}.\n\n"
        if d.get("trained")
        else ".\n\n"
    )
    return head + table(header, rows)


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def paths(d: Json) -> str:
    single, plain = d["lesion"]["single"], d["plain"]
    worst = min(single, key=lambda b: b["test_acc"])
    lesions = [
        [
            d["model"],
            pct(d["lesion"]["baseline"]),
            pct(_median([b["test_acc"] for b in single])),
            f"{pct(worst['test_acc'])} ({worst['block']})",
        ],
        [
            plain["model"],
            pct(plain["baseline"]),
            pct(_median([b["test_acc"] for b in plain["single"]])),
            pct(min(b["test_acc"] for b in plain["single"])),
        ],
    ]
    text = table(["model", "intact", "one block deleted: median", "worst"], lesions)
    rand = [[r["k"], pct(r["mean"]), pct(r["min"]), pct(r["max"])] for r in d["lesion"]["random"]]
    text += f"\n\n{d['model']} with k random blocks deleted ({d['lesion']['samples']} samples each):\n\n"
    text += table(["k", "mean", "min", "max"], rand)
    g = d["gradient"]
    lo, hi = g["effective_lengths"]
    return (
        text
        + "\n\n"
        + table(
            [
                "blocks",
                "gradient factor per branch",
                "mean path length of the gradient",
                "mean path length",
                "90% of the gradient",
            ],
            [
                [
                    g["blocks"],
                    f"{g['decay_per_block']:.2f}",
                    f"{g['gradient_mean_length']:.1f}",
                    f"{g['path_mean_length']:.1f}",
                    f"lengths {lo}-{hi}",
                ]
            ],
        )
    )


def offsets(d: Json) -> str:
    layers = [[layer["name"], f"{layer['mean_offset_image_px']:.2f}"] for layer in d["layers"]]
    points = [
        [
            "x".join(map(str, p["point"])),
            p["why"],
            f"{p['spread_ratio']:.2f}",
            f"{p['mean_shift_px']:.2f}",
            pct(p["outside_image"]),
        ]
        for p in d["points"]
    ]
    text = f"{d['model']}, {d['samples_per_point']} sampling points per unit.\n\n"
    text += table(["deformable layer", "mean offset (image px)"], layers)
    return (
        text
        + "\n\n"
        + table(["unit", "chosen as", "spread / regular grid", "mean shift px", "outside the image"], points)
    )


# name: (title, renderer); the order of the page.
ANALYSES: dict[str, tuple[str, Callable[[Json], str]]] = {
    "rf": ("Receptive fields (`cnnlab analyze rf vgg16`)", rf),
    "inception": ("Inception's 1x1 reductions (`cnnlab analyze inception`)", inception),
    "scaling": ("EfficientNet's compound scaling (`cnnlab analyze scaling`)", scaling),
    "templates": ("A linear classifier's templates (`cnnlab analyze templates`)", templates),
    "knn": ("k-nearest neighbours (`cnnlab analyze knn`)", knn),
    "se": ("SE excitations per class (`cnnlab analyze se`)", se),
    "compare": ("Cost against accuracy (`cnnlab compare --train`)", compare),
    "paths": ("ResNet as an ensemble of paths (`cnnlab analyze paths`)", paths),
    "offsets": ("Deformable sampling points (`cnnlab analyze offsets`)", offsets),
}
