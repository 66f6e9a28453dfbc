"""`cnnlab convert --from torchvision|timm --model NAME FILE --out RUN_DIR`: a checkpoint as a run."""

from __future__ import annotations

import argparse
from typing import Any

from .common import print_json


def cmd_convert(args: argparse.Namespace) -> None:
    from ..convert import convert_checkpoint

    r = convert_checkpoint(args.source, args.model, args.file, args.out)
    if args.json:
        print_json(r)
        return
    names = "ImageNet class names" if r["class_names"] == "imagenet" else "placeholder class names"
    print(
        f"{r['model']}: {r['tensors']} tensors, {r['params']:,} parameters, {r['num_classes']} classes, "
        f"{r['in_chans']} channels, input {'x'.join(map(str, r['input_size']))}, {names}; "
        f"reloaded logits max abs diff {r['max_abs_diff']:.2e}"
    )
    print(f"wrote {r['run_dir']}: use it with `cnnlab predict {r['run_dir']} IMAGE` or `cnnlab eval --data`")


def add_convert_command(sub: Any) -> None:
    from ..convert import SOURCES

    p = sub.add_parser(
        "convert",
        help="turn a torchvision or timm checkpoint into a run directory",
        description="Reads FILE (.pth/.pt without running code, or .safetensors), renames its keys where "
        "cnnlab's differ, reads the number of classes and channels off its shapes, checks every key and "
        "shape against cnnlab's model, and writes a run directory (ImageNet mean, std and input size) "
        "that `cnnlab predict`, `cnnlab eval --data` and `cnnlab.load_run` accept.",
    )
    p.add_argument("--from", dest="source", choices=SOURCES, required=True, help="who made the checkpoint")
    p.add_argument("--model", required=True, help="a cnnlab model (timm's seresnetN is se_resnetN)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="a new or empty directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert)
