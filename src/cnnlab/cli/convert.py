"""`cnnlab convert --from torchvision|timm --model NAME FILE --out RUN_DIR`: a checkpoint as a run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..convert import convert_checkpoint

    return convert_checkpoint(args.source, args.model, args.file, args.out)


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    size, crop = "x".join(map(str, r["input_size"])), "x".join(map(str, r["input_size"][1:]))
    if r["class_names"] == "imagenet":
        inputs = f"ImageNet class names, shorter side {r['resize_size']} then centre {crop} crop"
    else:
        inputs = f"placeholder class names, input {size}"
    kwargs = "".join(f", {k}={v}" for k, v in r["model_kwargs"].items())
    print(
        f"{r['model']}{kwargs}: {r['tensors']} tensors, {r['params']:,} parameters, "
        f"{r['num_classes']} classes, {r['in_chans']} channels; {inputs}; "
        f"reloaded logits max abs diff {r['max_abs_diff']:.2e}"
    )
    print(
        f"wrote {r['run_dir']}: `cnnlab predict {r['run_dir']} IMAGE`, "
        f"`cnnlab eval {r['run_dir']} --data ...`, "
        f"or fine-tune it: `cnnlab train --init {r['run_dir']} --data ...`"
    )


def add(sub: Any) -> None:
    from ..convert import SOURCES

    p = sub.add_parser(
        "convert",
        parents=[JSON],
        help="turn a torchvision or timm checkpoint into a run directory",
        description="Reads FILE (.pth/.pt without running code, or .safetensors), renames its keys where "
        "cnnlab's differ, reads the number of classes and channels off its shapes, checks every key and "
        "shape against cnnlab's model, and writes a run directory that `cnnlab predict`, "
        "`cnnlab eval --data`, `cnnlab train --init` and `cnnlab.load_run` accept. A 1000-class model gets "
        "ImageNet's class names and the evaluation preprocessing of its library's ImageNet weights "
        "(resize, centre crop, mean, std).",
    )
    p.add_argument("--from", dest="source", choices=SOURCES, required=True, help="who made the checkpoint")
    p.add_argument(
        "--model",
        required=True,
        help="the model's name in its library (timm's seresnetN is cnnlab's se_resnetN)",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="a new or empty directory")
    p.set_defaults(func=run, show=show)
