"""Render docs/results.md from the recorded JSON: every measured number on that page comes from a file;
and docs/papers.md from the papers' recipes registered beside the models.

Run as ``python benchmarks/render.py`` (``make results``) to write both pages, or with ``--check`` to exit
with status 1 when a page differs from its render. Both import cnnlab, from this checkout's
``src``. The inputs are every
``benchmarks/results/*.json`` (recognized by their shape: ``cnnlab bench --json``, ``deform_conv.py``,
``channels_last.py --json``, ``time_to_accuracy.py``, ``zoo.py``, ``inference.py``,
``data_store.py``, ``optimizer_step.py``, ``allocator.py``, ``prefetch.py``) and every
``docs/figures/NAME.json`` an analysis wrote (``render_analyses.py``), and every
``docs/experiments/NAME.json`` an experiment wrote (``render_experiments.py``, which imports cnnlab's
formatter). A file of a shape this module does not know is an error, so a new kind of result gets its
table rather than being left off the page.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

# The sibling modules, however this file was loaded (as a script, or by path from the tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_analyses import ANALYSES
from render_experiments import EXPERIMENTS_DIR, render_experiments
from render_format import Json, count, each_run, num, pct, table
from render_papers import render_papers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks/results")
FIGURES = Path("docs/figures")
PAGE = Path("docs/results.md")
PAPERS_PAGE = Path("docs/papers.md")


def load(root: Path, rel: Path) -> Json:
    return json.loads((root / rel).read_text(encoding="utf-8"))


# --- benchmarks/results ------------------------------------------------------------------------------


def machine_of(data: Json) -> Json | None:
    """A file's machine record: at its top, or in its rows (``cnnlab bench --json`` puts one in each)."""
    if "machine" in data:
        return data["machine"]
    rows = data.get("results")
    if isinstance(rows, list) and rows and "machine" in rows[0]:
        return rows[0]["machine"]
    return None


def machines(files: dict[str, Json]) -> str:
    """One row per file that records its machine; the others are named below the table."""
    rows, unrecorded = [], []
    for name, data in files.items():
        m = machine_of(data)
        if m is None:
            unrecorded.append(f"`{name}`")
            continue
        threads = "not recorded" if m.get("threads") is None else m["threads"]
        recorded = "added afterwards" if m.get("added_afterwards") else "at measurement"
        rows.append(
            [f"`{name}`", m["cpu"], m["cores"], threads, m["torch"], m.get("gpu") or "none", recorded]
        )
    text = table(["file", "CPU", "cores", "threads", "torch", "GPU", "machine recorded"], rows)
    if unrecorded:
        text += (
            "\n\nNo machine recorded (their numbers are counts or accuracies, not timings): "
            + ", ".join(unrecorded)
            + "."
        )
    return text


def _config(row: Json) -> str:
    if row["naive"]:
        return "naive (fp32, NCHW, eager)"
    text = f"{row['precision']}, {'channels-last' if row['channels_last'] else 'NCHW'}"
    return text + (", compiled" if row["compile"] else "")


def _ceiling(row: Json) -> str:
    probe = row.get("probe")
    if probe is None:  # recorded before results said what the probe measured
        return f"{num(row['peak_gflops_per_s'], 0)} (matmul 1024, median)"
    shape = "x".join(map(str, probe["shape"]))
    return f"{num(probe['gflops_per_s'], 0)} ({probe['op']} {shape}, best of {probe['repetitions']})"


def bench_rows(data: Json) -> str:
    """``cnnlab bench --json``: one row per configuration, with the memory it moves where every row
    recorded it (``cnnlab.traffic``)."""
    rows = []
    memory = all("bandwidth_utilization" in r for r in data["results"])
    for r in data["results"]:
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        setup = [r["model"], r["mode"], r["batch_size"], "x".join(map(str, r["input"])), _config(r)]
        speed = [num(r["images_per_s"]), num(r["gflops_per_s"]), _ceiling(r), pct(r["utilization"])]
        rows.append([*setup, *speed, speedup])
        if memory:
            moved = [num(r["bytes_per_image"] / 1e6, 2), num(r["gb_per_s"], 2), num(r["copy_gb_per_s"], 2)]
            rows[-1] += [*moved, pct(r["bandwidth_utilization"])]
    header = ["model", "mode", "batch", "input", "precision, layout", "images/s", "GFLOP/s"]
    header += ["ceiling GFLOP/s", "utilization", "speed-up over naive"]
    if memory:
        header += ["MB moved per image", "GB/s", "copy GB/s", "of copy bandwidth"]
    return table(header, rows)


def deform_rows(data: Json) -> str:
    """``deform_conv.py --json``: DeformConv2d's forward+backward over a plain conv's, per shape, and
    where timed, the grid_sample path's beside it; then the median and the largest module ratio."""
    rows = []
    grid = all("module_grid_ratio" in r for r in data["results"].values())
    for name, r in data["results"].items():
        s = data["shapes"][name]
        shape = f"({s['batch']}, {s['in_ch']}, {s['out_ch']}, {s['size']}x{s['size']}, {s['stride']})"
        rows.append(
            [name, shape, num(r["module_dcn_ms"]), num(r["module_conv_ms"]), f"{r['module_ratio']:.2f}x"]
        )
        rows[-1] += [num(r["op_dcn_ms"]), num(r["op_conv_ms"]), f"{r['op_ratio']:.2f}x"]
        if grid:
            rows[-1] += [f"{r['module_grid_ratio']:.2f}x", f"{r['op_grid_ratio']:.2f}x"]
    header = ["shape", "(N, Cin, Cout, HxW, stride)", "module ms", "conv ms", "module / conv"]
    header += ["op ms", "conv ms", "op / conv"]
    if grid:
        header += ["grid_sample module / conv", "grid_sample op / conv"]
    sampling = {"native": "the C++ kernel"}.get(data.get("sampling", "grid_sample"), "grid_sample")
    head = f"{data['threads']} thread(s), median ms per forward+backward; sampled by {sampling}.\n\n"
    ratios = [r["module_ratio"] for r in data["results"].values()]
    tail = f"\n\nModule / conv: median {statistics.median(ratios):.2f}x, largest {max(ratios):.2f}x"
    if grid:
        grid_ratios = [r["module_grid_ratio"] for r in data["results"].values()]
        tail += f" (grid_sample: {statistics.median(grid_ratios):.2f}x and {max(grid_ratios):.2f}x)"
    return head + table(header, rows).rstrip("\n") + tail + "."


def channels_last_rows(data: Json) -> str:
    """``channels_last.py --json``: NCHW against channels-last, timed round-robin."""
    rows = []
    for p, r in data["results"].items():
        won = f"{r['channels_last_faster_rounds']} of {data['rounds']}"
        rows.append([p, num(r["nchw_ms"], 0), num(r["channels_last_ms"], 0), f"{r['speedup']:.3f}x"])
        rows[-1] += [f"{r['round_speedup_median']:.3f}x", won]
    shape = "x".join(map(str, data["input"]))
    head = f"{data['model']} training, batch {data['batch']}, {shape}, {data['rounds']} rounds.\n\n"
    header = ["precision", "NCHW ms", "channels-last ms", "speed-up", "median per round", "channels-last won"]
    return head + table(header, rows)


def _portable(command: str) -> str:
    """A recorded command without its ``--out`` directory, which was a scratch path of that machine."""
    return re.sub(r"\s--out\s+\S+", "", command)


def _reached(run: Json, threshold: str) -> str:
    hit = run["reached"][threshold]
    return f"{hit['epoch']} ({num(hit['seconds'])} s)" if hit else "not reached"


def accuracy_rows(data: Json) -> str:
    """``time_to_accuracy.py``: the default training over seeds, per precision, and candidate recipes
    beside it, with the epochs and seconds each run took to reach 98.5% and 98.8% where recorded."""
    rows = []
    for label, runs in data["runs"].items():
        s = data["summary"][label]
        accs = ", ".join(pct(r["test_acc"]) for r in runs)
        times = ", ".join(num(r["train_time_s"]) for r in runs)
        seeds = ", ".join(str(r["seed"]) for r in runs)
        flags = data.get("flags", {}).get(label, f"--precision {label}")
        rows.append([f"`{flags}`", seeds, accs, f"{pct(s['mean'], 2)} +- {pct(s['std'], 2)}", times])
        if "reached" in runs[0]:
            rows[-1] += [", ".join(_reached(r, t) for r in runs) for t in ("0.985", "0.988")]
    header = ["flags", "seeds", "test accuracy", "mean +- std", "training s"]
    if any("reached" in runs[0] for runs in data["runs"].values()):
        header += ["epoch (s) to 98.5%", "epoch (s) to 98.8%"]
    text = f"`{_portable(data['command'])}`\n\n" + table(header, rows)
    timed = data.get("timed_default_run")
    if timed:
        text += f"\n\nOne timed run, `{_portable(timed['command'])}`:\n\n" + table(
            ["precision", "test accuracy", "training s", "whole command s"],
            [[timed["precision"], pct(timed["test_acc"]), num(timed["train_time_s"]), num(timed["wall_s"])]],
        )
    return text


def zoo_rows(data: Json) -> str:
    """``zoo.py``: every family trained by its recipe, and the small-folder duel."""
    rows = []
    for name, m in data["models"].items():
        errors = [r["error"] for r in m["runs"] if "error" in r]
        first = next((r for r in m["runs"] if "test_acc" in r), None)
        if first is None:
            rows.append([name, "", "", f"failed: {errors[0]}", "", "", "", ""])
            continue
        accs = ", ".join(pct(r["test_acc"]) for r in m["runs"] if "test_acc" in r)
        spread = f"{pct(m['mean'], 2)} +- {pct(m['std'], 2)}" if m["seeds"] > 1 else pct(m["mean"], 2)
        size = "x".join(map(str, first["input_size"]))
        target = (
            f"{pct(m['target'])} in {m['target_s']} s: {'met' if m['met'] else 'missed'}"
            if "met" in m
            else ""
        )
        rows.append(
            [name, size, first["epochs"], accs, spread, num(m["wall_s"]), num(m["images_per_s"]), target]
        )
    text = f"`{_portable(data['command'])}`, on mnist5k\n\n" + table(
        ["model", "input", "epochs", "test accuracy", "mean +- std", "wall s", "images/s", "target"], rows
    )
    duel = data.get("folder")
    if duel:
        text += f"\n\nThe defaults on a class folder of {count(duel['images'])} mnist5k digits:\n\n" + table(
            ["model", "epochs", "test accuracy", "wall s"],
            [
                [
                    f"{who} ({'x'.join(map(str, r['input_size']))})",
                    r["epochs"],
                    pct(r["test_acc"]),
                    num(r["wall_s"]),
                ]
                for who, r in (("default CNN", duel["cnn"]), ("default k-NN", duel["knn"]))
            ],
        )
    return text


def inference_rows(data: Json) -> str:
    """``inference.py``: cnnlab's engines against onnxruntime and OpenVINO used directly, and the top-1
    each engine and precision keeps."""
    rows = []
    for r in data["speed"]:
        ips, ratios, engines = r["images_per_s"], r["ratios"], r["engines"]
        ours, ours_bf16 = (f"{num(ips[k])} ({engines[k][0]})" for k in ("cnnlab", "cnnlab_bf16"))
        fp32 = [num(ips["onnxruntime"]), num(ips["openvino_fp32"]), f"{ratios['fp32_vs_best_fp32']:.2f}x"]
        bf16 = [num(ips["openvino_bf16"]), f"{ratios['bf16_vs_openvino_bf16']:.2f}x"]
        torch = [num(ips["torch_fp32"]), num(ips["torch_bf16"])]
        rows.append([r["model"], ours, *fp32, ours_bf16, *bf16, *torch])
    shape = "x".join(map(str, data["input"]))
    header = ["model", "cnnlab (fp32, the default)", "onnxruntime", "OpenVINO fp32", "ratio to the faster"]
    header += ["cnnlab bf16", "OpenVINO bf16", "ratio", "torch fp32", "torch bf16"]
    text = f"`{data['command'].strip()}`: images/s at batch {data['batch_size']}, {shape}.\n\n"
    text += table(header, rows) if rows else "(speed not measured in this run)"
    if not data["accuracy"]:
        return text
    paths = [f"{r['backend']} {r['precision']}" for r in data["accuracy"][0]["results"]]
    checks = [
        [c["model"], f"{c['epochs']} at {c['image_size']} px"]
        + [f"{pct(r['top1'], 1)} ({r['changed_vs_torch_fp32']})" for r in c["results"]]
        for c in data["accuracy"]
    ]
    return text + (
        f"\n\nTop-1 on mnist5k's {count(data['accuracy'][0]['test_images'])} test images after a short "
        "training, and in brackets the images whose predicted class differs from torch fp32's:\n\n"
        + table(["model", "epochs", *paths], checks)
    )


def _pack_rows(p: Json) -> str:
    ips, rounds = p["images_per_s"], len(p["rounds"]["pack_1_worker"])
    ratio = f"{p['two_over_one']:.2f}x 1 worker, {pct(p['two_over_twice_decode'])} of 2x one process"
    rows = [
        [f"decode in one process ({count(p['decode_sample'])} files)", num(ips["decode_one_process"]), "-"],
        ["`cnnlab data pack`, 1 worker", num(ips["pack_1_worker"]), "-"],
        ["`cnnlab data pack`, 2 workers", num(ips["pack_2_workers"]), ratio],
    ]
    head = f"Packing {count(p['images'])} generated JPEGs (images/s, the best of {rounds} rounds):\n\n"
    return head + table(["how", "images/s", "ratio"], rows)


def _first_step(f: Json) -> str:
    later = " and ".join(f"{num(s, 2)} s" for s in f["later_s"])
    return (
        f"`cnnlab train --data FOLDER` on the same folder, from its start to its first step: "
        f"{num(f['first_s'], 2)} s when it packs the folder, {later} when it maps the cached store "
        f"({f['first_over_second']:.1f}x sooner)."
    )


def _mmap_rows(m: Json) -> str:
    store, memory, over = m["runs"]["store"], m["runs"]["memory"], m["rss_anon_over_memory_mb"]
    rows = [
        [
            who,
            count(r["train_images"]),
            num(r["images_per_s"]),
            pct(r["data_fraction"]),
            num(r["rss_anon_mb"], 0),
        ]
        for who, r in m["runs"].items()
    ]
    head = (
        f"resnet18 on random resized crops at {m['crop']} px, {store['steps']} steps of "
        f"{store['batch_size']}, from a {m['store_bytes'] / 1e9:.2f} GB store of {m['image']} images "
        "(page cache warm) and from "
        f"{count(memory['train_images'])} images in memory; the store's RssAnon is "
        f"{num(abs(over), 0)} MB {'above' if over >= 0 else 'below'} the in-memory run's:\n\n"
    )
    return head + table(["data", "training images", "images/s", "data time", "RssAnon MB"], rows)


def store_rows(data: Json) -> str:
    """``data_store.py``: packing in parallel, the folder cache's first step, training from a store."""
    parts = [f"`{data['command'].strip()}`."]
    parts += [_pack_rows(data["pack"])] if "pack" in data else []
    parts += [_first_step(data["first_step"])] if "first_step" in data else []
    parts += [_mmap_rows(data["mmap"])] if "mmap" in data else []
    return "\n\n".join(parts)


def optimizer_rows(data: Json) -> str:
    """``optimizer_step.py``: one step of torch's fused optimizer against its loop over the parameters,
    and an epoch of training with each."""
    speedup = "{:.2f}x".format
    steps = [
        [r["model"], count(r["params"]), r["optimizer"], num(r["loop_ms"], 2), num(r["fused_ms"], 2),
         speedup(r["speedup"])]
        for r in data["steps"]
    ]  # fmt: skip
    speeds = [
        [
            r["model"],
            *(each_run(r[k]) for k in ("loop_images_per_s", "fused_images_per_s")),
            speedup(r["speedup"]),
        ]
        for r in data["train"]
    ]
    header = ["model", "parameters", "optimizer", "loop ms", "fused ms", "speed-up"]
    train_header = ["model", "loop images/s", "fused images/s", "speed-up (medians)"]
    return "\n\n".join([
        f"`{data['command'].strip()}`. One optimizer step over the model's parameters (10 classes):",
        table(header, steps),
        "One epoch of `cnnlab train --model M` (its recipe's optimizer) per run, alternating:",
        table(train_header, speeds),
    ])  # fmt: skip


def allocator_rows(data: Json) -> str:
    """``allocator.py``: training speed with glibc's malloc as it comes and with the freed memory kept."""
    measured = data["allocator"]
    steps = ("system_default", "kept_default", "system_naive", "kept_naive")
    bench = [
        [r["model"], "x".join(map(str, r["input"])), *(each_run(r[k]) for k in steps)]
        for r in measured["bench"]
    ]
    epochs = ("system_images_per_s", "kept_images_per_s")
    train = [[r["model"], *(each_run(r[k]) for k in epochs)] for r in measured["train"]]
    batch = measured["bench"][0]["batch_size"]
    header = ["model", "input", "default, system", "default, kept", "`--naive`, system", "`--naive`, kept"]
    return "\n\n".join([
        f"`{data['command'].strip()}`. Training steps in images/s at batch {batch}, each a fresh process:",
        table(header, bench),
        "One epoch of `cnnlab train --model M --epochs 1`, images/s:",
        table(["model", "system", "kept"], train),
    ])  # fmt: skip


def prefetch_rows(data: Json) -> str:
    """``prefetch.py``: training speed with the batches prepared by a one-thread worker, by a worker on
    the process's thread count, and on the training thread."""
    ways = ("one_images_per_s", "shared_images_per_s", "none_images_per_s")
    rows = [[r["model"], *(each_run(r[k]) for k in ways)] for r in data["prefetch"]]
    header = ["model", "worker on one thread", "worker on the process's count", "no worker"]
    return "\n\n".join([
        f"`{data['command'].strip()}`. Two epochs of `cnnlab train --model M` a run, images/s, alternating:",
        table(header, rows),
    ])  # fmt: skip


def result_kind(data: Json) -> tuple[str, Callable[[Json], str]]:
    """The heading and renderer for a results file, by its shape."""
    if isinstance(data.get("results"), list):
        return "`cnnlab bench`", bench_rows
    if "speed" in data and "accuracy" in data:
        return "Inference engines", inference_rows
    if "shapes" in data:
        return "DeformConv2d against a plain convolution", deform_rows
    if "rounds" in data:
        return "Channels-last against NCHW", channels_last_rows
    if "models" in data:
        return "The zoo: every family trained by its recipe", zoo_rows
    if {"pack", "first_step", "mmap"} & set(data):
        return "Packed stores", store_rows
    if "runs" in data and "summary" in data:
        return "Time to accuracy of the default training", accuracy_rows
    if "allocator" in data:
        return "glibc's malloc as it comes against the freed memory kept", allocator_rows
    if "prefetch" in data:
        return "The batches' worker thread: one torch thread against the process's count", prefetch_rows
    if "steps" in data and "train" in data:
        return "The fused optimizer step against torch's loop", optimizer_rows
    raise ValueError(f"no renderer for this kind of result (keys {sorted(data)})")


# --- the page ----------------------------------------------------------------------------------------

HEADER = """# Results

Every number on this page is rendered from a JSON file that a command wrote: `benchmarks/results/`
holds the benchmarks (`benchmarks/README.md` gives the command behind each file), `docs/figures/` the
analyses' numbers beside their figures, `docs/experiments/` the experiments'. Regenerate the page with
`make results` (`python benchmarks/render.py`); `tests/test_results.py` fails when it differs from the
render, so edit the JSON's producer, never this page."""

BENCH_NOTE = """Images/s, GFLOP/s and utilization are `cnnlab bench`'s (`benchmarks/README.md` says how it
measures them). The ceiling is the probe each row was divided by: a row that records its probe names
the winning product and its shape; older rows were divided by an earlier, smaller probe (the median of
1024x1024 matrix products), so their utilization is not comparable with the newer rows'."""


CLAIMS_NOTE = """Each claim is measured by `cnnlab experiment NAME` over seeds, every arm under the same
budget. Two arms are told apart only when their ranges over the seeds do not overlap; a difference
inside the seed-to-seed spread is "cannot tell" (`cnnlab.experiments.claims`)."""


def render(root: Path = ROOT) -> str:
    """The whole page, from the JSON under ``root``."""
    results = {p.name: load(root, RESULTS / p.name) for p in sorted((root / RESULTS).glob("*.json"))}
    figures = {p.stem: load(root, FIGURES / p.name) for p in sorted((root / FIGURES).glob("*.json"))}
    unknown = sorted(set(figures) - set(ANALYSES))
    if unknown:
        raise ValueError(f"no renderer for docs/figures/{unknown[0]}.json")
    experiments = {
        p.stem: load(root, EXPERIMENTS_DIR / p.name) for p in sorted((root / EXPERIMENTS_DIR).glob("*.json"))
    }
    recorded = {**results, **{f"{n}.json": d for n, d in {**figures, **experiments}.items()}}
    parts = [HEADER, "## Machines", machines(recorded)]
    parts += ["## Benchmarks", BENCH_NOTE]
    for name, data in results.items():
        title, renderer = result_kind(data)
        parts += [f"### {title}: `{name}`", renderer(data)]
    if experiments:
        parts += ["## The course's claims, measured", CLAIMS_NOTE, *render_experiments(experiments)]
    parts.append("## Analyses")
    for name, (title, renderer) in ANALYSES.items():
        if name in figures:
            parts += [f"### {title}", renderer(figures[name]), f"Figure: [{name}.png](figures/{name}.png)"]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page differs from its render")
    args = parser.parse_args(argv)
    status = 0
    for rel, page in ((PAGE, render()), (PAPERS_PAGE, render_papers())):
        path = ROOT / rel
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == page
            print(f"{rel} is {'up to date' if same else 'stale: run make results'}", file=sys.stderr)
            status = status or (0 if same else 1)
        else:
            path.write_text(page, encoding="utf-8")
            print(f"wrote {rel}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
