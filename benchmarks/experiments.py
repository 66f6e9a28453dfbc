"""Record the experiments' default runs for docs/results.md: each ``cnnlab experiment NAME`` runs with
no other flag in a scratch directory (its runs are not kept), one after the other, and its NAME.json and
NAME.png are copied into ``docs/experiments/``; then ``make results`` renders the page.

    python benchmarks/experiments.py             # every experiment, in the order of the course
    python benchmarks/experiments.py lrn se      # some of them
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cnnlab.experiments import EXPERIMENTS  # noqa: E402

OUT = ROOT / "docs" / "experiments"


def record(name: str, scratch: Path) -> bool:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "cnnlab", "experiment", name, "--no-progress", "--out", name]
    if subprocess.run(cmd, cwd=scratch).returncode != 0:
        print(f"{name}: failed, nothing recorded", flush=True)
        return False
    OUT.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".png"):
        shutil.copyfile(scratch / name / f"{name}{suffix}", OUT / f"{name}{suffix}")
    print(f"{name}: {time.perf_counter() - started:.0f} s, recorded in {OUT.relative_to(ROOT)}", flush=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: every experiment ({', '.join(EXPERIMENTS)})")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"no experiment named {unknown[0]}")
    with tempfile.TemporaryDirectory(prefix="cnnlab-experiments-") as scratch:
        failed = [name for name in args.names or EXPERIMENTS if not record(name, Path(scratch))]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
