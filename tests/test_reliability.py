"""Faults a user can meet, and what cnnlab does about each: hostile checkpoints, a full disk, hostile
archives, a bad download, broken datasets. Each ends in one clear `CnnlabError` line (or a warning
and a skip) and leaves nothing half-done behind; see the "Reliability" table of the README."""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import os
import pickle
import re
import tarfile
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError

import cnnlab.data
from cnnlab import rundir
from cnnlab.cli import main as cli_main
from cnnlab.data import cifar
from cnnlab.errors import DataError, RunDirError
from cnnlab.models import create_model

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# ---------------------------------------------------------------- booby-trapped checkpoints


class _Trap:
    """Unpickling this calls ``func(*args)``: how a tampered checkpoint attacks whoever loads it."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.func, self.args


TRAPS: dict[str, Callable[[Path], _Trap]] = {
    "path_touch": lambda marker: _Trap(Path.touch, marker),  # pickled as getattr(Path, "touch")
    "open_for_writing": lambda marker: _Trap(builtins.open, str(marker), "w"),
}


def write_trapped(path: Path, fmt: str, trap: _Trap) -> Path:
    """A checkpoint-shaped object hiding ``trap``, as torch.save writes it now (zip), as it wrote it
    before 1.6 (legacy, what old ``.pth`` files are), or as a bare pickle."""
    state = {"epoch": 1, "model": {"w": torch.zeros(2)}, "extra": trap}
    if fmt == "zip":
        torch.save(state, path)
    elif fmt == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    return path


@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw"])
def test_trapped_pickle_is_live_without_the_guard(tmp_path: Path, fmt: str) -> None:
    """The control: loaded the unsafe way, each trap really does create its file."""
    for name, make in TRAPS.items():
        marker = tmp_path / f"{fmt}-{name}"
        path = write_trapped(tmp_path / f"{name}.pth", fmt, make(marker))
        if fmt == "raw":
            pickle.loads(path.read_bytes())
        else:
            torch.load(path, weights_only=False)
        assert marker.exists()


@pytest.mark.parametrize("trap", sorted(TRAPS))
@pytest.mark.parametrize(
    ("fmt", "name"), [("zip", "checkpoint.pt"), ("legacy", "foreign.pth"), ("raw", "x.pth")]
)
def test_trapped_checkpoint_is_refused(tmp_path: Path, trap: str, fmt: str, name: str) -> None:
    marker = tmp_path / "pwned"
    path = write_trapped(tmp_path / name, fmt, TRAPS[trap](marker))
    with pytest.raises(RunDirError) as caught:
        rundir.load_checkpoint(path)
    message = one_line(caught.value)
    assert re.fullmatch(
        rf"refusing to load checkpoint {re.escape(str(path))}: it asks for \S+,.*could run code.*", message
    )
    assert "weights_only" not in message  # torch's advice to turn the guard off is not passed on
    assert not marker.exists()


def test_every_torch_load_is_weights_only() -> None:
    """A new loader of .pt/.pth files must not forget the guard: every call in the package sets it."""
    calls = []
    for source in SRC.rglob("*.py"):
        text = source.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start() : text.index("\n", match.start())]
            calls.append((source.name, "weights_only=True" in call))
    assert calls and all(ok for _, ok in calls), calls


# ---------------------------------------------------------------- a full disk mid-write


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("linear", num_classes=3, in_chans=1, image_size=8)


class _FillsUp:
    """A file object on a disk that fills up: the first half of a write lands, then ENOSPC."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> _FillsUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()


def _full_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FillsUp(real_fdopen(fd, *a, **k)))


def _full_on_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    # Delayed allocation (ext4, XFS, NFS) reports a full disk only when the data is flushed.
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def _full_in_safetensors(monkeypatch: pytest.MonkeyPatch) -> None:
    # What safetensors (Rust) raises on ENOSPC: not an OSError, the OS error only in its text.
    def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"\x00" * 100)
        raise SafetensorError(
            f"Error while serializing: I/O error: No space left on device (os error 28) at path {filename!r}"
        )

    monkeypatch.setattr(rundir, "save_file", save_file)


# where the disk fills up -> (how to simulate it, the files whose writing then fails)
DISK_FULL = {
    "write": (_full_on_write, [rundir.CHECKPOINT, rundir.RESULT]),  # safetensors does its own writes
    "fsync": (_full_on_fsync, [rundir.CHECKPOINT, rundir.RESULT, rundir.WEIGHTS]),
    "safetensors": (_full_in_safetensors, [rundir.WEIGHTS]),
}


@pytest.mark.parametrize("where", sorted(DISK_FULL))
def test_full_disk_keeps_the_previous_checkpoint_and_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    old_model = _model(0)
    rundir.save_checkpoint({"epoch": 1, "model": old_model.state_dict()}, tmp_path / rundir.CHECKPOINT)
    rundir.save_weights(old_model, tmp_path / rundir.WEIGHTS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    simulate, failing = DISK_FULL[where]
    simulate(monkeypatch)
    new_model = _model(1)
    writes = {
        rundir.CHECKPOINT: lambda: rundir.save_checkpoint({"epoch": 2}, tmp_path / rundir.CHECKPOINT),
        rundir.RESULT: lambda: rundir.write_json(tmp_path / rundir.RESULT, {"epochs": 2}),
        rundir.WEIGHTS: lambda: rundir.save_weights(new_model, tmp_path / rundir.WEIGHTS),
    }
    for name in failing:
        with pytest.raises(RunDirError) as caught:
            writes[name]()
        assert one_line(caught.value).startswith(f"disk full while writing {tmp_path / name};")
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == sorted(before)  # no temporary file, no result.json
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert rundir.load_checkpoint(tmp_path / rundir.CHECKPOINT)["epoch"] == 1
    weights = rundir.load_weights(tmp_path / rundir.WEIGHTS)
    assert all(torch.equal(weights[k], v) for k, v in old_model.state_dict().items())


def test_other_write_errors_are_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(rundir.tempfile, "mkstemp", mkstemp)
    with pytest.raises(RunDirError, match=r"cannot write .*config\.json: Permission denied") as caught:
        rundir.write_json(tmp_path / "config.json", {})
    one_line(caught.value)


def _digits_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(
                root / f"c{c}" / f"{i}.png"
            )
    return root


def test_full_disk_at_the_end_of_training_is_one_line_and_keeps_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: the final weights cannot be written; exit 2, one line, no traceback,
    and the last epoch's checkpoint is whole, so nothing of the training is lost."""
    data, run = _digits_folder(tmp_path / "digits"), tmp_path / "run"
    _full_in_safetensors(monkeypatch)
    args = ["train", "--model", "linear", "--data", str(data), "--epochs", "2", "--batch-size", "4"]
    code = cli_main([*args, "--out", str(run), "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"cnnlab train: error: disk full while writing {run / rundir.WEIGHTS};")
    assert "Traceback" not in "\n".join(err)
    assert rundir.load_checkpoint(run / rundir.CHECKPOINT)["epoch"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert not (run / rundir.WEIGHTS).exists()


# ---------------------------------------------------------------- hostile archives, bad downloads


def _hostile_cifar_archive(path: Path, case: str, outside: Path) -> Path:
    def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        return info

    bad = {
        "dotdot": member("cifar-10-batches-py/../../evil"),
        "absolute": member(str(outside / "evil")),
        "symlink_outside": member("cifar-10-batches-py/batches.meta", tarfile.SYMTYPE, str(outside)),
    }[case]
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member("cifar-10-batches-py/readme.txt"), io.BytesIO(b""))  # a harmless one first
        tf.addfile(bad, io.BytesIO(b"") if bad.isfile() else None)
    return path


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink_outside"])
def test_hostile_cifar_archive_through_load_writes_nothing(tmp_path: Path, case: str) -> None:
    """Through the public entry point (tests/test_download.py covers every case at safe_extract_tar)."""
    outside, data = tmp_path / "outside", tmp_path / "data"
    outside.mkdir()
    data.mkdir()
    archive = _hostile_cifar_archive(data / "cifar-10-python.tar.gz", case, outside)
    with pytest.raises(DataError, match=r"refusing to extract .*member") as caught:
        cnnlab.data.load(archive)
    one_line(caught.value)
    assert os.listdir(outside) == [] and os.listdir(data) == [archive.name]  # no temp folder either
    assert sorted(os.listdir(tmp_path)) == ["data", "outside"]


def test_corrupt_download_leaves_nothing_and_never_touches_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = []

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        opened.append(url)
        response = io.BytesIO(b"<html>captive portal</html>")
        response.headers = {}  # type: ignore[attr-defined]
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    root = tmp_path / "data"
    with pytest.raises(
        DataError, match=r"download of .*cifar-10-python\.tar\.gz is corrupt: expected MD5"
    ) as caught:
        cnnlab.data.load("cifar10", root=root, download=True)
    one_line(caught.value)
    assert opened == [cifar._VARIANTS["cifar10"].url]
    assert os.listdir(root) == []  # no archive, no .part file, no half-extracted folder


# ---------------------------------------------------------------- broken datasets


def _broken_folder(root: Path) -> tuple[Path, list[Path]]:
    """Two classes of good images, plus a truncated PNG, a JPEG of random bytes and non-image files."""
    _digits_folder(root, per_class=5)
    good = (root / "c0" / "0.png").read_bytes()
    bad = [root / "c0" / "truncated.png", root / "c1" / "noise.jpg"]
    bad[0].write_bytes(good[: len(good) // 2])
    bad[1].write_bytes(np.random.default_rng(1).bytes(300))
    (root / "c1" / "notes.txt").write_text("not an image")
    (root / "c1" / "Thumbs.db").write_bytes(b"\x00" * 64)
    return root, bad


def test_broken_images_are_named_and_skipped(tmp_path: Path) -> None:
    root, bad = _broken_folder(tmp_path / "imgs")
    with pytest.warns(UserWarning) as record:
        ds = cnnlab.data.load(root)
    warned = " ".join(str(w.message) for w in record)
    assert all(str(path) in warned for path in bad)  # each bad file reported by its path
    assert len(ds.train_labels) + len(ds.test_labels) == 10  # the ten good images, nothing else


def test_broken_image_with_strict_is_a_data_error(tmp_path: Path) -> None:
    root, _ = _broken_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match=r"cannot read image .*(truncated\.png|noise\.jpg)") as caught:
        cnnlab.data.load(root, strict=True)
    one_line(caught.value)


def test_empty_and_unreadable_class_folders(tmp_path: Path) -> None:
    root = _digits_folder(tmp_path / "imgs")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty has no images"):
        cnnlab.data.load(root)
    (root / "empty").rmdir()
    (root / "all_bad").mkdir()
    (root / "all_bad" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.warns(UserWarning, match="x.png"), pytest.raises(DataError, match=r"all_bad has no readable"):
        cnnlab.data.load(root)


def test_corrupt_cifar_memo_index_cannot_exhaust_memory(tmp_path: Path) -> None:
    """Found by tests/test_fuzz.py: one flipped opcode made a 6 kB batch name memo slot 275,870,730,
    and the C unpickler zeroed 4 GB for it. Here slot 2**24 (256 MB there); now a few bytes."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(b"\x80\x02N" + b"r" + (2**24).to_bytes(4, "little") + b".")
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"batches\.meta: it holds a NoneType"):
            cnnlab.data.load(tmp_path)  # the folder that holds cifar-10-batches-py/
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_truncated_cifar_batch_and_idx_file_through_load(tmp_path: Path) -> None:
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x"] * 10}))
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch)[:-100])
    with pytest.raises(DataError, match=r"data_batch_2.*corrupt") as caught:
        cnnlab.data.load(folder)
    one_line(caught.value)

    mnist = tmp_path / "mnist"
    mnist.mkdir()
    images = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 4, 4)) + bytes(32)
    labels = (0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2)
    (mnist / "train-images-idx3-ubyte").write_bytes(images)
    (mnist / "train-labels-idx1-ubyte").write_bytes(labels)
    (mnist / "t10k-labels-idx1-ubyte").write_bytes(labels)
    (mnist / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images)[:-12])  # the download cut short
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*corrupt") as caught:
        cnnlab.data.load(mnist)
    one_line(caught.value)


def test_an_image_size_beyond_memory_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    from cnnlab.cli import main

    out = tmp_path / "run"
    code = main(["train", "--image-size", "5000", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    # 5,000 x 5000 x 5000 bytes, and one image in float32 while it is resized
    assert re.search(r"mnist5k at 5000x5000 \(5,000 images\) would take 125\.\d GB of memory", err)
    assert "--image-size" in err
    assert not out.exists()
