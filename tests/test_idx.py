"""MNIST and Fashion-MNIST IDX files, gzipped or not, well-formed and broken."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import idx_bytes

from cnnlab.data.idx import load_idx, read_idx
from cnnlab.errors import DataError


def write_mnist(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("name", "sub"), [("mnist", ""), ("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw")]
)
def test_idx_round_trip(tmp_path: Path, gz: bool, name: str, sub: str) -> None:
    arrays = write_mnist(tmp_path / sub, gz)
    ds = load_idx(tmp_path, name)
    assert ds.train_images.shape == (12, 1, 28, 28) and ds.test_images.shape == (5, 1, 28, 28)
    assert np.array_equal(ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert ds.train_labels.dtype == torch.int64
    assert ds.train_labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    if name == "mnist":
        assert ds.classes == [str(d) for d in range(10)] and not ds.hflip
    else:
        assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.hflip


def test_idx_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    labels = np.zeros(12, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, magic=0x803))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte has magic 0x00000803, expected 0x00000801"):
        load_idx(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, magic=0x12340801))
    with pytest.raises(DataError, match="not an IDX file"):
        load_idx(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, magic=0x0D01))
    with pytest.raises(DataError, match="type code 0x0d"):
        load_idx(tmp_path)


def test_idx_missing_file_is_listed(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=rf"t10k-labels-idx1-ubyte\[\.gz\] missing in {tmp_path}.*lecun"):
        load_idx(tmp_path)
    with pytest.raises(DataError, match="zalando-research/fashionmnist"):
        load_idx(tmp_path / "nothing", "fashion-mnist")


def test_idx_label_count_must_match(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"4 labels but .* 5 images"):
        load_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_or_padded(tmp_path: Path, gz: bool) -> None:
    good = idx_bytes(np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28) % 251)
    assert read_idx_bytes(tmp_path, good, gz).shape == (2, 28, 28)
    for n in [0, 3, 4, 8, 15, 16, 17, len(good) // 2, len(good) - 1]:
        with pytest.raises(DataError, match=r"f\.idx"):
            read_idx_bytes(tmp_path, good[:n], gz)
    with pytest.raises(DataError, match=r"f\.idx"):
        read_idx_bytes(tmp_path, good + b"\x00", gz)
    if gz:  # a cut in the compressed stream itself
        (tmp_path / "f.idx").write_bytes(gzip.compress(good)[:-9])
        with pytest.raises(DataError, match=r"f\.idx"):
            read_idx(tmp_path / "f.idx")


def read_idx_bytes(tmp_path: Path, data: bytes, gz: bool) -> torch.Tensor:
    (tmp_path / "f.idx").write_bytes(gzip.compress(data) if gz else data)
    return read_idx(tmp_path / "f.idx")
