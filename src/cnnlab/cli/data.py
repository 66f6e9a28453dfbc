"""`cnnlab data pack|info|verify`: datasets decoded once into memory-mapped stores (data/pack.py)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..data.pack import pack
    from ..data.store import store_info, verify_store

    if args.action == "pack":
        return pack(
            args.source,
            args.out,
            size=args.size,
            workers=args.workers,
            strict=args.strict,
            root=args.data_root,
            quiet=args.json,
        )
    return verify_store(args.store) if args.action == "verify" else store_info(args.store)


def show(r: dict[str, Any], args: argparse.Namespace) -> None:
    if args.action == "pack":
        skipped = f", {r['skipped']} unreadable files skipped" if r["skipped"] else ""
        workers = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
        print(
            f"packed {r['train']:,} training and {r['test']:,} test images of {r['image']} into {r['store']} "
            f"in {r['seconds']:.1f}s ({r['images_per_s']:,.0f} images/s, {workers})"
            f"{skipped}"
        )
        return
    print(
        f"{r['store']}: {r['name']} from {r['source']}; {r['train']:,} training and {r['test']:,} test "
        f"images of {r['image']}, {r['classes']} classes, {r['bytes'] / 1e9:.2f} GB"
    )
    print(f"mean {r['mean']}, std {r['std']}, horizontal flips {'yes' if r['hflip'] else 'no'}")
    if r["skipped"]:
        print(f"{r['skipped']} unreadable files were skipped when it was packed")
    if r.get("verified"):
        print("every file matches its checksum")


def add(sub: Any) -> None:
    p = sub.add_parser(
        "data",
        help="pack a dataset into a memory-mapped store, describe or verify one",
        description="A store holds a dataset decoded once, as fixed-size uint8 images that training "
        "reads by memory mapping (--data STORE): no decoding at the start of a run, and no limit from "
        "the memory.",
    )
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p), metavar="ACTION")
    pk = actions.add_parser(
        "pack",
        parents=[JSON],
        help="decode an image folder (or any dataset) into a store, in parallel",
        description="Decodes SOURCE (an image folder with one sub-folder per class, or any dataset "
        "name or path cnnlab reads) by worker processes into STORE. Killed at any point, it leaves no "
        "store or a complete one; run it again to restart.",
    )
    pk.add_argument("source")
    pk.add_argument("--out", required=True, metavar="STORE", help="the store's folder (must not exist)")
    pk.add_argument(
        "--size",
        type=int,
        help="resize each image's shorter side to this and keep the centre square (default: a folder's "
        "own size when all images share one, else 64)",
    )
    pk.add_argument("--workers", type=int, help="decoding processes (default: one per core)")
    pk.add_argument(
        "--strict", action="store_true", help="fail on an unreadable image instead of skipping it"
    )
    pk.add_argument("--data-root", help="where named datasets live (default ./data or $CNNLAB_DATA)")
    for action, text in (
        ("info", "describe a store"),
        ("verify", "check every file of a store against its checksums"),
    ):
        a = actions.add_parser(
            action, parents=[JSON], help=text, description=text[0].upper() + text[1:] + "."
        )
        a.add_argument("store")
    p.set_defaults(func=run, show=show)
