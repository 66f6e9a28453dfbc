"""Check `cnnlab convert` against torchvision and timm: record the test fixtures, compare seeded dumps.

Development aid; it needs the reference environment of ../shared/tools/reference.py (set-up at the
top of that file), never cnnlab's tests.

  # 1. fixtures for the tests: each reference model's key/shape manifest and its float64 logits for
  #    the weights tests/filled.py makes from the key names (tests/fixtures/reference/*.json.gz)
  /tmp/refenv/bin/python scripts/reference_fixtures.py record [NAME ...]

  # 2. the reference libraries' own seeded random init: dump each model, then convert and compare
  for n in $(.venv/bin/python scripts/reference_fixtures.py names); do
    /tmp/refenv/bin/python ../shared/tools/reference.py dump $n /tmp/dumps/${n/:/_}.safetensors --size 64
  done
  .venv/bin/python scripts/reference_fixtures.py dumps /tmp/dumps
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "reference"
SIZE = 64
SOURCES = {"tv": "torchvision", "timm": "timm"}

# Every model `cnnlab convert` is checked on, as reference.py names it.
COVERAGE = [
    "tv:alexnet",
    *(f"tv:vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    "tv:googlenet",
    *(f"tv:resnet{d}" for d in (18, 34, 50, 101, 152)),
    *(f"tv:densenet{d}" for d in (121, 169, 201, 161)),
    *(f"tv:efficientnet_b{i}" for i in range(8)),
    *(f"timm:seresnet{d}" for d in (50, 101, 152)),
    "timm:resnet50",  # timm's ResNets have torchvision's names: one stands for all
    *(f"timm:efficientnet_b{i}" for i in range(8)),
]


def fixture_path(name: str) -> Path:
    return FIXTURES / f"{name.replace(':', '_')}.json.gz"


def record(names: list[str]) -> None:
    """Build each reference model, fill it from its key names, and write its manifest and logits."""
    import torch

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT.parent / "shared" / "tools")]
    import reference  # the shared tool: lets torchvision import without its compiled operators
    from filled import filled_input, filled_state

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in names:
        model = reference.build(name).eval()
        manifest = {k: list(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict(filled_state(manifest))
        # In float64: fp32 logits of a deep net differ between CPUs (AVX2 and AVX-512 kernels round
        # differently) by up to 1e-3 of the largest, which would hide a small conversion error.
        with torch.no_grad():
            logits = model.double()(filled_input(SIZE).double())[0]
        fixture = {
            "name": name,
            "size": SIZE,
            "dtype": "float64",
            "keys": manifest,
            "logits": [float(f"{v:.17g}") for v in logits.tolist()],
        }
        with gzip.open(fixture_path(name), "wt", encoding="utf-8") as f:
            json.dump(fixture, f, separators=(",", ":"))
        print(f"{name}: {len(manifest)} tensors, logits {logits.abs().max().item():.3g} at most")


def dumps(folder: Path) -> None:
    """Convert each ``reference.py dump`` file and compare cnnlab's logits with the reference's."""
    import torch
    from safetensors.torch import load_file

    from cnnlab.convert import converted_model

    print(f"{'reference':24} {'cnnlab':18} {'max |logit|':>11} {'max rel diff':>12}")
    for name in COVERAGE:
        file = folder / f"{name.replace(':', '_')}.safetensors"
        if not file.exists():
            print(f"{name:24} (no dump at {file})")
            continue
        state = load_file(file)
        x, expected = state.pop("__input__"), state.pop("__output__")
        source, _, arch = name.partition(":")
        model, built = converted_model(SOURCES[source], arch, state)
        with torch.no_grad():
            got = model(x)
        rel = ((got - expected).abs().max() / expected.abs().max()).item()
        print(f"{name:24} {built['model']:18} {expected.abs().max().item():11.3g} {rel:12.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("verb", choices=["record", "dumps", "names"])
    p.add_argument("args", nargs="*")
    a = p.parse_args()
    if a.verb == "record":
        record(a.args or COVERAGE)
    elif a.verb == "dumps":
        dumps(Path(a.args[0] if a.args else "/tmp/dumps"))
    else:
        print(" ".join(COVERAGE))


if __name__ == "__main__":
    main()
