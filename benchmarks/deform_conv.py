"""Forward+backward time of DeformConv2d against a plain nn.Conv2d of the same shape.

Run as ``.venv/bin/python benchmarks/deform_conv.py [--json] [--repeats N]``; the JSON records the
machine (``cnnlab.machine.machine``). For each shape the models
use (dcn_resnet20's last stage, dcn_resnet50's stage 4, and a mid shape) it times one training step's
forward+backward (input, weights and offsets all needing gradients, the output's gradient given):

- module: ``DeformConv2d`` (its offset conv included: what a user pays) against ``nn.Conv2d``;
- op: ``deform_conv2d`` with given offsets against ``F.conv2d``.

Where the C++ kernel is built (``cnnlab.layers.native``), the layer samples with it; ``--grid-sample``
also times the same layer and op on the ``grid_sample`` path, the fallback, in the same rounds, and
the JSON's ``sampling`` says which path the main figures took.

With ``--baseline FILE`` (another version of ``cnnlab/layers/deform_conv.py``, e.g. ``git show
HEAD:src/cnnlab/layers/deform_conv.py > /tmp/old_deform_conv.py``) that version's module and op are
timed too, in the same rounds, so a change can be judged on a busy machine.

The alternatives are timed interleaved, step by step, in the same process on one thread
(``torch.set_num_threads(1)``), and the median of each is reported, so the ratios stay fair on a busy
machine; absolute times are only meaningful on a quiet one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.layers import DeformConv2d, deform_conv, deform_conv2d, native
from cnnlab.machine import machine

# name: (batch, in_ch, out_ch, size, stride)
SHAPES = {
    "r20_s1": (128, 64, 64, 8, 1),
    "r20_s2": (128, 32, 64, 16, 2),
    "r50_s1": (16, 512, 512, 7, 1),
    "r50_s2": (16, 512, 512, 14, 2),
    "mid": (32, 128, 128, 28, 1),
}


@contextmanager
def grid_sample_path():
    """deform_conv2d samples with grid_sample inside this block, built kernel or not."""
    applies = deform_conv._native_applies
    deform_conv._native_applies = lambda *tensors: False
    try:
        yield
    finally:
        deform_conv._native_applies = applies


def on_grid_sample(fn):
    """``fn`` with its forward pass on the grid_sample path (the backward follows the graph it built)."""

    def run():
        with grid_sample_path():
            return fn()

    return run


def load_layers(path: str):
    """A ``deform_conv.py`` (or an older ``layers.py``) loaded as a stand-alone module: it imports
    only torch."""
    spec = importlib.util.spec_from_file_location("baseline_layers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step(fn, inputs, grad_out):
    for t in inputs:
        t.grad = None
    out = fn()
    out.backward(grad_out)


def _time_interleaved(cases: dict[str, tuple], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per forward+backward of each case, the cases run in turn each round."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(warmup + repeats):
        for name, (fn, inputs, grad_out) in cases.items():
            start = time.perf_counter()
            _step(fn, inputs, grad_out)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def _ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of the per-round ratio: the two ran back to back, under the same load."""
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def bench_shape(batch, cin, cout, size, stride, repeats, warmup, baseline=None, grid=False):
    torch.manual_seed(0)
    x = torch.randn(batch, cin, size, size, requires_grad=True)
    dcn = DeformConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    nn.init.normal_(dcn.offset.weight, std=0.01)  # fractional offsets, as after some training
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    conv.weight.data.copy_(dcn.weight.data)
    out_size = (size + 2 - 3) // stride + 1
    grad_out = torch.randn(batch, cout, out_size, out_size)
    with torch.no_grad():
        offset0 = dcn.offset(x)
    offset = offset0.clone().requires_grad_()
    weight = dcn.weight.detach().clone().requires_grad_()
    cases = {
        "module_dcn": (lambda: dcn(x), [x, *dcn.parameters()], grad_out),
        "module_conv": (lambda: conv(x), [x, *conv.parameters()], grad_out),
        "op_dcn": (lambda: deform_conv2d(x, offset, weight, None, stride, 1), [x, offset, weight], grad_out),
        "op_conv": (lambda: F.conv2d(x, weight, None, stride, 1), [x, weight], grad_out),
    }
    if grid:
        for kind in ("module", "op"):
            fn, inputs, grad = cases[f"{kind}_dcn"]
            cases[f"{kind}_grid"] = (on_grid_sample(fn), inputs, grad)
    if baseline is not None:
        old = baseline.DeformConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        old.load_state_dict(dcn.state_dict())
        cases["module_base"] = (lambda: old(x), [x, *old.parameters()], grad_out)
        cases["op_base"] = (
            lambda: baseline.deform_conv2d(x, offset, weight, None, stride, 1),
            [x, offset, weight],
            grad_out,
        )
    times = _time_interleaved(cases, repeats, warmup)
    result = {f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}
    for kind in ("module", "op"):
        result[f"{kind}_ratio"] = _ratio(times, f"{kind}_dcn", f"{kind}_conv")
        if baseline is not None:
            result[f"{kind}_base_ratio"] = _ratio(times, f"{kind}_base", f"{kind}_conv")
        if grid:
            result[f"{kind}_grid_ratio"] = _ratio(times, f"{kind}_grid", f"{kind}_conv")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--baseline", help="another deform_conv.py to time alongside")
    parser.add_argument("--grid-sample", action="store_true", help="also time the grid_sample path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = load_layers(args.baseline) if args.baseline else None
    results = {}
    for name in args.shapes:
        r = results[name] = bench_shape(*SHAPES[name], args.repeats, args.warmup, baseline, args.grid_sample)
        if args.json:
            continue
        if len(results) == 1:
            base = f" {'base':>6} {'base':>6}" if baseline else ""
            base += f" {'grid':>6} {'grid':>6}" if args.grid_sample else ""
            print(
                f"{'shape':8} {'(N,Cin,Cout,HW,s)':20} {'module':>8} {'conv':>8} {'ratio':>6}"
                f" {'op':>8} {'conv':>8} {'ratio':>6}{base}   (ms fwd+bwd, median; ratio: median per round)"
            )
        base = f" {r['module_base_ratio']:6.2f} {r['op_base_ratio']:6.2f}" if baseline else ""
        base += f" {r['module_grid_ratio']:6.2f} {r['op_grid_ratio']:6.2f}" if args.grid_sample else ""
        print(
            f"{name:8} {SHAPES[name]!s:20} {r['module_dcn_ms']:8.2f} {r['module_conv_ms']:8.2f}"
            f" {r['module_ratio']:6.2f} {r['op_dcn_ms']:8.2f} {r['op_conv_ms']:8.2f}"
            f" {r['op_ratio']:6.2f}{base}",
            flush=True,
        )
    if args.json:
        keys = ("batch", "in_ch", "out_ch", "size", "stride")
        shapes = {k: dict(zip(keys, SHAPES[k], strict=True)) for k in results}
        sampling = "native" if native.available() else "grid_sample"
        record = {
            "machine": machine(),
            "threads": args.threads,
            "sampling": sampling,
            "shapes": shapes,
            "results": results,
        }
        json.dump(record, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
