"""The dataset file formats, built byte for byte in tmp_path: CIFAR pickles and archives, IDX files,
image folders, downloads and hostile archives. Nothing touches the network."""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.request
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import cifar
from cnnlab.data.cifar import load_cifar
from cnnlab.data.download import download, md5sum, safe_extract_tar
from cnnlab.data.folder import load_folder
from cnnlab.data.idx import load_idx, read_idx
from cnnlab.errors import DataError

# ----------------------------------------------------------------------------------------- CIFAR


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
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz.*download=True"):
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


# ------------------------------------------------------------------------------------- archives


def hostile_archive(path: Path, outside: Path, case: str) -> Path:
    def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x"):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
        return ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None

    members = [info("top/good.txt")]  # a harmless member first: it must not be extracted either
    members += {
        "dotdot": [info("top/../../evil.txt")],
        "absolute": [info(str(outside / "evil.txt"))],
        "symlink_relative": [info("top/link", tarfile.SYMTYPE, "../../outside")],
        "symlink_absolute": [info("top/link", tarfile.SYMTYPE, str(outside))],
        "write_through_symlink": [info("d", tarfile.SYMTYPE, str(outside)), info("d/evil.txt")],
        "symlink_chain": [
            info("sub", tarfile.DIRTYPE),
            info("b", tarfile.SYMTYPE, "sub/.."),
            info("a", tarfile.SYMTYPE, "b/.."),
        ],
        "hardlink": [info("top/h", tarfile.LNKTYPE, "../outside/secret")],
        "device": [info("top/dev", tarfile.CHRTYPE)],
    }[case]
    with tarfile.open(path, "w:gz") as tf:
        for ti, data in members:
            tf.addfile(ti, data)
    return path


HOSTILE = [
    "dotdot",
    "absolute",
    "symlink_relative",
    "symlink_absolute",
    "write_through_symlink",
    "symlink_chain",
    "hardlink",
    "device",
]


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("data_filter", [True, False])
def test_hostile_tar_extracts_nothing(tmp_path: Path, monkeypatch, case: str, data_filter: bool) -> None:
    if not data_filter:  # as on a Python without PEP 706: the member check alone must hold
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    archive = hostile_archive(tmp_path / "evil.tar.gz", outside, case)
    dest = tmp_path / "x" / "dest"
    with pytest.raises(DataError, match=r"refusing to extract .*member"):
        safe_extract_tar(archive, dest)
    assert not dest.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "outside"]


def test_hostile_cifar_archive(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile_archive(tmp_path / "cifar-10-python.tar.gz", outside, "dotdot")
    with pytest.raises(DataError, match="refusing to extract"):
        load_cifar(tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz", "outside"]


@pytest.mark.parametrize("data_filter", [True, False])
def test_benign_tar_with_inner_symlink_extracts(tmp_path: Path, monkeypatch, data_filter: bool) -> None:
    if not data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with tarfile.open(tmp_path / "ok.tar", "w") as tf:
        ti = tarfile.TarInfo("top/a.txt")
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("top/alias")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tf.addfile(link)
    safe_extract_tar(tmp_path / "ok.tar", tmp_path / "out")
    assert (tmp_path / "out" / "top" / "alias").read_text() == "hi"


def test_truncated_archive(tmp_path: Path) -> None:
    write_cifar(tmp_path / "src", "cifar10")
    archive = pack(tmp_path / "src", "cifar-10-batches-py", tmp_path / "a.tar.gz")
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="cannot extract"):
        safe_extract_tar(archive, tmp_path / "out")


# ------------------------------------------------------------------------------------- download


def test_download_verifies_and_skips_when_present(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3_000_000))
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = tmp_path / "dl" / "file.bin"
    assert download(src.as_uri(), dest, md5, progress=False) == dest
    assert dest.read_bytes() == src.read_bytes() and md5sum(dest) == md5
    # Already there with the right checksum: the (now broken) URL is never opened.
    assert download((tmp_path / "gone").as_uri(), dest, md5.upper(), progress=False) == dest
    assert os.listdir(tmp_path / "dl") == ["file.bin"]


def test_download_wrong_md5_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    url = src.as_uri()
    with pytest.raises(DataError, match=rf"{url}.*expected MD5 f{{32}}, got {md5sum(src)}"):
        download(url, tmp_path / "dl" / "file.bin", "f" * 32, progress=False)
    assert os.listdir(tmp_path / "dl") == []


def test_download_network_failure(tmp_path: Path) -> None:
    url = (tmp_path / "missing.bin").as_uri()
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(DataError, match=rf"could not download {url}: .*by hand and put it at {dest}"):
        download(url, dest, "0" * 32, progress=False)
    assert os.listdir(tmp_path / "dl") == []


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), KeyboardInterrupt()])
def test_interrupted_download_leaves_nothing(tmp_path: Path, monkeypatch, error: BaseException) -> None:
    class Response(io.BytesIO):
        headers: ClassVar[dict[str, str]] = {"Content-Length": "100"}

        def read(self, n: int = -1) -> bytes:
            if self.tell() >= 10:
                raise error
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"0" * 100))
    with pytest.raises(DataError if isinstance(error, Exception) else KeyboardInterrupt):
        download("https://example.invalid/f.bin", tmp_path / "f.bin", "0" * 32, progress=True)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------ IDX


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


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


# --------------------------------------------------------------------------------------- folder


def save(path: Path, mode: str, size: tuple[int, int], color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def image_folder(root: Path) -> Path:
    """3 classes x 5 PNGs of mixed sizes and modes, a text file, a hidden file, one corrupt PNG."""
    for c, name in enumerate(["cat", "dog", "fox"]):
        for i in range(5):
            mode = "RGB" if (c + i) % 2 else "L"
            save(root / name / f"{i}.png", mode, (20 + 4 * i, 24), (50 * c,) * len(mode))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"junk")  # ignored silently, though unreadable
    (root / "fox" / "broken.png").write_bytes((root / "fox" / "0.png").read_bytes()[:40])
    return root


def test_folder_defaults_skip_corrupt_and_split(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    with pytest.warns(UserWarning, match=r"broken\.png") as record:
        ds = load_folder(root)
    assert len(record) == 1
    assert ds.name == "pets" and ds.classes == ["cat", "dog", "fox"] and ds.hflip
    assert ds.train_images.shape == (12, 3, 64, 64) and ds.test_images.shape == (3, 3, 64, 64)
    assert torch.bincount(ds.test_labels, minlength=3).tolist() == [1, 1, 1]  # 20% of each class
    assert torch.bincount(ds.train_labels, minlength=3).tolist() == [4, 4, 4]
    # Solid images stay solid through resize and crop: class c is gray level 50 * c.
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert torch.equal(images.amax(dim=(1, 2, 3)), (labels * 50).to(torch.uint8))
        assert torch.equal(images.amin(dim=(1, 2, 3)), (labels * 50).to(torch.uint8))


def test_folder_strict_raises_on_corrupt(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_folder(root, strict=True)


def test_folder_same_size_grayscale_kept_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ["a", "b"]:
        for i in range(5):
            arrays[(name, i)] = rng.integers(0, 256, (12, 16), dtype=np.uint8)  # H=12, W=16
            path = tmp_path / "g" / name / f"{i}.PNG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arrays[(name, i)], "L").save(path, format="PNG")
    ds = load_folder(tmp_path / "g", test_fraction=0.4, seed=3)
    assert ds.in_chans == 1 and ds.image_size == (12, 16)
    assert len(ds.test_labels) == 4 and torch.bincount(ds.test_labels).tolist() == [2, 2]
    everything = torch.cat([ds.train_images, ds.test_images])[:, 0].numpy()
    for array in arrays.values():
        assert any(np.array_equal(array, got) for got in everything)
    assert torch.equal(load_folder(tmp_path / "g", test_fraction=0.4, seed=3).test_images, ds.test_images)


def test_folder_resize_is_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    im = np.zeros((20, 60, 3), dtype=np.uint8)  # H=20, W=60: red | green | blue thirds
    im[:, :20, 0] = im[:, 20:40, 1] = im[:, 40:, 2] = 255
    for c in ["a", "b"]:
        (tmp_path / "f" / c).mkdir(parents=True)
        Image.fromarray(im).save(tmp_path / "f" / c / "x.png")
    ds = load_folder(tmp_path / "f", image_size=10, test_fraction=0.0)
    assert ds.train_images.shape == (2, 3, 10, 10) and len(ds.test_labels) == 0
    assert ds.train_images[0, :, 5, 5].tolist() == [0, 255, 0]  # the centre third survives, pure green


def test_folder_transparency_and_16_bit(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "b").mkdir(parents=True)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t" / "a" / "x.png")
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(tmp_path / "t" / "b" / "x.png")
    ds = load_folder(tmp_path / "t", test_fraction=0.0)
    assert ds.train_images[0].unique().tolist() == [255]  # composited onto white
    (tmp_path / "w" / "a").mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)).save(tmp_path / "w" / "a" / "x.png")
    ds = load_folder(tmp_path / "w", test_fraction=0.0)
    assert ds.in_chans == 1 and ds.train_images.unique().tolist() == [100]  # scaled, not clipped to 255


def test_folder_train_val_layout(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2)):
        for c in ["x", "y"]:
            for i in range(n):
                save(tmp_path / "d" / split / c / f"{i}.jpg", "RGB", (8, 8), (10, 20, 30))
    ds = load_folder(tmp_path / "d")
    assert len(ds.train_labels) == 8 and len(ds.test_labels) == 4 and ds.classes == ["x", "y"]
    assert ds.test_labels.tolist() == [0, 0, 1, 1]
    save(tmp_path / "d" / "val" / "z" / "0.jpg", "RGB", (8, 8), (0, 0, 0))
    with pytest.raises(DataError, match=r"only in val \['z'\]"):
        load_folder(tmp_path / "d")


def test_folder_empty_class_and_no_classes(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    (root / "emu").mkdir()
    (root / "emu" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match=r"class folder .*emu has no images"):
        load_folder(root)
    save(tmp_path / "flat" / "a.png", "RGB", (4, 4), (0, 0, 0))
    with pytest.raises(DataError, match="no class folders"):
        load_folder(tmp_path / "flat")
