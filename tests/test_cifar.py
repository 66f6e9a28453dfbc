"""CIFAR-10/100: official-format pickles and archives built in tmp_path; pickles that try to run code."""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import cifar
from cnnlab.data.cifar import load_cifar
from cnnlab.data.download import md5sum, safe_extract_tar
from cnnlab.errors import DataError


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles as Python 2's cPickle wrote the official CIFAR files: bytes become Python 2
    ``str`` (BINSTRING opcodes, read back as ``str`` under ``encoding="latin1"``) and numpy's
    array reconstruction is named under ``numpy.core``, as numpy 1 named it."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


SPECS = {  # variant: (folder, train files, test files, meta, label key, names key, classes)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", b"labels", b"label_names", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names", 100),
}  # fmt: skip


def batch_dict(n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"training batch 1 of 5",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: [int(x) for x in rng.integers(0, num_classes, size=n)],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [0] * n
    return d


def write_cifar(parent: Path, variant: str, dumps=py2_pickle, n: int = 3) -> dict:
    """The extracted official folder under ``parent``; returns what each split should load as."""
    folder, train, test, meta, label_key, names_key, k = SPECS[variant]
    (parent / folder).mkdir(parents=True)
    names = [f"class_{i}".encode() for i in range(k)]
    (parent / folder / meta).write_bytes(dumps({names_key: names, b"num_cases_per_batch": n}))
    expected = {}
    for split, files in (("train", train), ("test", test)):
        batches = [batch_dict(n, label_key, k, seed=hash((split, f)) % 1000) for f in files]
        for f, b in zip(files, batches, strict=True):
            (parent / folder / f).write_bytes(dumps(b))
        expected[split] = (
            np.concatenate([b[b"data"] for b in batches]),
            [label for b in batches for label in b[label_key]],
        )
    expected["classes"] = [n.decode() for n in names]
    return expected


def pack(source_parent: Path, top: str, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(source_parent / top, arcname=top)
    return archive


def check_cifar(ds, expected: dict, variant: str) -> None:
    assert ds.name == variant and ds.hflip and ds.classes == expected["classes"]
    for split in ("train", "test"):
        data, labels = expected[split]
        images = getattr(ds, f"{split}_images")
        assert images.dtype == torch.uint8 and images.shape == (len(data), 3, 32, 32)
        assert getattr(ds, f"{split}_labels").tolist() == labels
        # Row-major R, G, B planes: value k of a row is channel k // 1024, row k % 1024 // 32, column k % 32.
        for c, y, x in [(0, 0, 1), (0, 1, 0), (1, 5, 7), (2, 31, 30)]:
            assert images[1, c, y, x].item() == data[1, c * 1024 + y * 32 + x]
        assert np.array_equal(images.numpy().reshape(len(data), -1), data)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_from_archive_folder_and_parent(tmp_path: Path, variant: str) -> None:
    folder = SPECS[variant][0]
    expected = write_cifar(tmp_path / "src", variant)
    archive = pack(tmp_path / "src", folder, tmp_path / "a" / cifar._VARIANTS[variant].archive)
    check_cifar(load_cifar(archive, variant), expected, variant)  # (c) the archive itself
    assert (tmp_path / "a" / folder).is_dir()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [archive.name, folder]
    )  # no temp left
    check_cifar(load_cifar(tmp_path / "a" / folder, variant), expected, variant)  # (b) the folder
    check_cifar(load_cifar(tmp_path / "a", variant), expected, variant)  # (a) its parent
    d = tmp_path / "d"
    d.mkdir()
    (d / archive.name).write_bytes(archive.read_bytes())
    check_cifar(load_cifar(d, variant), expected, variant)  # (d) a folder holding the archive
    assert (d / folder).is_dir()


def test_cifar_python3_pickles_with_bytes_keys(tmp_path: Path) -> None:
    expected = write_cifar(tmp_path, "cifar10", dumps=lambda o: pickle.dumps(o, protocol=4))
    check_cifar(load_cifar(tmp_path, "cifar10"), expected, "cifar10")


def test_cifar_missing_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz.*without --no-download"):
        load_cifar(tmp_path, "cifar100")
    with pytest.raises(KeyError, match="cifar10"):
        load_cifar(tmp_path, "cifar7")


def test_cifar_download_uses_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = write_cifar(tmp_path / "src", "cifar10")
    archive = pack(tmp_path / "src", "cifar-10-batches-py", tmp_path / "served" / "cifar-10-python.tar.gz")
    v = dataclasses.replace(cifar._VARIANTS["cifar10"], url=archive.as_uri(), md5=md5sum(archive))
    monkeypatch.setitem(cifar._VARIANTS, "cifar10", v)
    check_cifar(load_cifar(tmp_path / "root", download=True), expected, "cifar10")
    assert md5sum(tmp_path / "root" / "cifar-10-python.tar.gz") == v.md5
    monkeypatch.setitem(cifar._VARIANTS, "cifar10", dataclasses.replace(v, md5="0" * 32))
    with pytest.raises(DataError, match=r"expected MD5 0{32}"):
        load_cifar(tmp_path / "other", download=True)
    assert list((tmp_path / "other").iterdir()) == []


class _Payload:
    """A pickle that runs ``func(arg)`` when loaded, the way a tampered archive would attack."""

    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def exec_payload(marker: Path) -> _Payload:
    return _Payload(builtins.exec, f"open({str(marker)!r}, 'w').write('pwned')")


def test_payload_is_live_without_the_guard(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(exec_payload(marker), protocol=2))  # proves the next test's payload is real
    assert marker.exists()


@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta", "nested"])
@pytest.mark.parametrize("kind", ["exec", "os.system"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_pickle_cannot_run_code(tmp_path: Path, where: str, kind: str, protocol: int) -> None:
    write_cifar(tmp_path, "cifar10")
    marker = tmp_path / "ran"
    payload = exec_payload(marker) if kind == "exec" else _Payload(os.system, f"touch {marker}")
    target = tmp_path / "cifar-10-batches-py" / ("data_batch_1" if where == "nested" else where)
    obj = {b"data": payload, b"labels": []} if where == "nested" else payload
    target.write_bytes(py2_pickle(obj) if protocol == 2 else pickle.dumps(obj, protocol=protocol))
    with pytest.raises(
        DataError,
        match=r"refusing to load .*asks to run code \(((__builtin__|builtins)\.exec|posix\.system)\)",
    ):
        load_cifar(tmp_path)
    assert not marker.exists()


def corrupt_cases(good: bytes) -> list[tuple[str, bytes]]:
    cuts = [0, 1, 2, 30, len(good) // 2, len(good) - 2, len(good) - 1]
    return [(f"cut{n}", good[:n]) for n in cuts] + [("garbage", b"\x80\x02not a pickle at all")]


@pytest.mark.parametrize("case", range(8))
def test_cifar_truncated_batch(tmp_path: Path, case: int) -> None:
    write_cifar(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    _, data = corrupt_cases(path.read_bytes())[case]
    path.write_bytes(data)
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar(tmp_path)


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.pop(b"labels"),
        lambda b: b.update({b"data": b[b"data"][:, :3071]}),
        lambda b: b.update({b"data": b[b"data"].astype(np.int16)}),
        lambda b: b.update({b"labels": b[b"labels"][:-1]}),
        lambda b: b.update({b"labels": [10] * len(b[b"labels"])}),
        lambda b: b.update({b"labels": ["cat"] * len(b[b"labels"])}),
    ],
)
def test_cifar_malformed_batch(tmp_path: Path, change) -> None:
    write_cifar(tmp_path, "cifar10")
    batch = batch_dict(3, b"labels", 10, seed=1)
    change(batch)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(py2_pickle(batch))
    with pytest.raises(DataError, match="test_batch"):
        load_cifar(tmp_path)


def test_hostile_cifar_archive(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = tarfile.TarInfo("../evil.txt")
    evil.size = 4
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tf:
        tf.addfile(evil, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="refusing to extract"):
        load_cifar(tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz", "outside"]


def test_truncated_archive(tmp_path: Path) -> None:
    write_cifar(tmp_path / "src", "cifar10")
    archive = pack(tmp_path / "src", "cifar-10-batches-py", tmp_path / "a.tar.gz")
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="cannot extract"):
        safe_extract_tar(archive, tmp_path / "out")
