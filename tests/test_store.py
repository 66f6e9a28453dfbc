"""Packed stores: packing equals loading, the store's damage is one line, the folder cache, training."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load
from cnnlab.data import pack as packing
from cnnlab.data.cache import CACHE, cached_folder
from cnnlab.data.folder import load_folder
from cnnlab.data.pack import pack
from cnnlab.data.store import MANIFEST, images_file, labels_file, load_store, store_info, verify_store
from cnnlab.errors import DataError


def photo_folder(root: Path, per_class: int = 12, classes: int = 3, seed: int = 0) -> Path:
    """JPEGs and PNGs of mixed sizes, in class folders: packing resizes them to 64 as loading does."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(40, 90, 2))
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def truncated_jpeg(path: Path) -> None:
    """A JPEG whose header reads but whose data ends early: found out only when decoding."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG"
    )
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with Image.open(path) as im:  # the header reads: the decoding worker is the one to find it out
        assert im.size == (64, 64)


def assert_same(a, b) -> None:
    for split in ("train", "test"):
        assert torch.equal(getattr(a, f"{split}_images"), getattr(b, f"{split}_images")), split
        assert torch.equal(getattr(a, f"{split}_labels"), getattr(b, f"{split}_labels")), split
    assert a.classes == b.classes and a.hflip == b.hflip
    assert a.mean == b.mean and a.std == b.std


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return photo_folder(tmp_path / "photos")


def test_a_packed_folder_is_the_folder_loaded(folder, tmp_path):
    pack(folder, tmp_path / "store", quiet=True)
    stored = load_store(tmp_path / "store")
    assert_same(stored, load_folder(folder))
    assert stored.train_images.shape[1:] == (3, 64, 64)
    info = store_info(tmp_path / "store")
    assert (info["train"], info["test"], info["classes"]) == (30, 6, 3)  # 2 of 12 per class held out
    assert info["bytes"] == 36 * 3 * 64 * 64 + 36 * 8


def test_files_that_fail_to_decode_leave_no_gap_whatever_the_chunks(folder, tmp_path, monkeypatch):
    """A file whose header reads but whose pixels do not is found by a worker mid-chunk: the rows after
    it move up, across chunks of 5."""
    truncated_jpeg(folder / "class1" / "4_truncated.jpg")
    (folder / "class2" / "junk.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipping it"):
        expected = load_folder(folder)
    monkeypatch.setattr(packing, "CHUNK", 5)
    with pytest.warns(UserWarning, match="skipping it"):
        pack(folder, tmp_path / "store", quiet=True)
    assert_same(load_store(tmp_path / "store"), expected)
    assert store_info(tmp_path / "store")["skipped"] == 2
    with pytest.raises(DataError, match="without --strict"):
        pack(folder, tmp_path / "strict", strict=True, quiet=True)
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob(".strict*"))


@pytest.mark.slow
def test_two_worker_processes_pack_what_one_does(tmp_path, monkeypatch):
    folder = photo_folder(tmp_path / "photos", per_class=20)
    truncated_jpeg(folder / "class0" / "7_truncated.jpg")
    monkeypatch.setattr(packing, "CHUNK", 8)
    monkeypatch.setattr(packing, "MIN_PER_WORKER", 1)
    with pytest.warns(UserWarning):
        one = pack(folder, tmp_path / "one", workers=1, quiet=True)
    with pytest.warns(UserWarning):
        two = pack(folder, tmp_path / "two", workers=2, quiet=True)
    assert (one["workers"], two["workers"]) == (1, 2)
    assert_same(load_store(tmp_path / "one"), load_store(tmp_path / "two"))
    for name in ("train", "test"):
        assert (tmp_path / "one" / images_file(name)).read_bytes() == (
            tmp_path / "two" / images_file(name)
        ).read_bytes()


def test_any_dataset_packs_and_loads_back():
    from cnnlab.data.pack import write_store

    data = load("mnist5k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            result = pack("mnist5k", Path(d) / "m", quiet=True)
            assert (result["train"], result["test"], result["image"]) == (4000, 1000, "1x28x28")
            stored = load(Path(d) / "m")
            assert_same(stored, data)
            assert stored.hflip is False
            with pytest.raises(DataError, match="exists already"):
                write_store(data, Path(d) / "m", "again")


@pytest.fixture
def store(folder, tmp_path) -> Path:
    pack(folder, tmp_path / "store", quiet=True)
    return tmp_path / "store"


def test_a_truncated_store_is_refused(store):
    path = store / images_file("train")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"has .* bytes, the manifest says"):
        load_store(store)


def test_a_damaged_labels_file_is_refused(store):
    path = store / labels_file("test")
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        load_store(store)


def test_damaged_pixels_load_but_fail_verification(store):
    path = store / images_file("train")
    data = bytearray(path.read_bytes())
    data[12345] ^= 0xFF
    path.write_bytes(bytes(data))
    load_store(store)  # pixels are not hashed on every load: that would read the whole store
    with pytest.raises(DataError, match=f"{images_file('train')} does not match its checksum"):
        verify_store(store)


def test_a_manifest_that_disagrees_with_its_arrays_is_refused(store):
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["splits"]["train"]["count"] += 1
    manifest["splits"]["train"]["class_counts"][0] += 1
    (store / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="the manifest says"):
        load_store(store)


def test_a_store_packed_at_another_size_is_refused(store):
    with pytest.raises(DataError, match="packed at 64x64, not 32x32"):
        load(store, image_size=32)
    # The centre crop of a stored side, ImageNet's evaluation, is a view of the store.
    crop = load(store, image_size=56, resize_side=64)
    assert torch.equal(crop.test_images, load_store(store).test_images[:, :, 4:60, 4:60])


def test_a_full_disk_is_one_line_and_leaves_nothing(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(packing.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    with pytest.raises(DataError, match=r"the store needs .* GB free"):
        pack(folder, tmp_path / "a", quiet=True)
    monkeypatch.undo()

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packing.os, "posix_fallocate", no_space)
    with pytest.raises(DataError, match="is full"):
        pack(folder, tmp_path / "b", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_the_command_line_packs_describes_and_verifies(cli, folder, tmp_path):
    out = cli("data", "pack", str(folder), "--out", str(tmp_path / "s"), "--size", "32", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["image"] == "3x32x32"
    out = cli("data", "verify", str(tmp_path / "s"))
    assert out.returncode == 0 and "every file matches its checksum" in out.stdout
    (tmp_path / "s" / labels_file("train")).write_bytes(b"")
    for action in ("info", "verify"):
        out = cli("data", action, str(tmp_path / "s"))
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    out = cli("data", "pack", str(folder), "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and "exists already" in out.stderr
    (tmp_path / "a-file").write_text("")
    out = cli("data", "pack", str(folder), "--out", str(tmp_path / "a-file" / "s"))
    assert out.returncode == 2 and "cannot write the store" in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_killed_pack_leaves_no_store_and_packs_again(cli, tmp_path):
    """SIGKILL while the workers decode: the store's folder does not exist (its work was in a hidden
    folder beside it), says so in one line, and the next pack removes the leftovers and finishes."""
    folder = tmp_path / "many"
    rng = np.random.default_rng(0)
    for c in range(2):
        (folder / str(c)).mkdir(parents=True)
        for i in range(1500):
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(
                folder / str(c) / f"{i}.jpg"
            )
    store = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "data",
        "pack",
        str(folder),
        "--out",
        str(store),
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while (
        not any(p.suffix == ".u8" for p in tmp_path.glob(".store.partial-*/*"))
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not store.exists()
    assert list(tmp_path.glob(".store.partial-*"))  # the leftovers a kill leaves
    out = cli("data", "info", str(store))
    assert out.returncode == 2 and "no store" in out.stderr
    out = cli("data", "pack", str(folder), "--out", str(store))
    assert out.returncode == 0, out.stderr
    assert not list(tmp_path.glob(".store.partial-*"))
    assert verify_store(store)["train"] == 2400


def test_a_folder_is_packed_once_and_again_when_it_changes(folder, tmp_path, monkeypatch):
    root = tmp_path / "root"
    first = cached_folder(folder, root, None, False)
    assert_same(first, load_folder(folder))
    assert len(list((root / CACHE).iterdir())) == 2  # the store and its lock

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(packing, "_decode", no_decoding)
    assert_same(cached_folder(folder, root, None, False), first)  # mapped, not decoded
    monkeypatch.undo()
    path = folder / "class0" / "0.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    cached_folder(folder, root, None, False)
    cached_folder(folder, root, 32, False)
    assert len([p for p in (root / CACHE).iterdir() if not p.name.startswith(".")]) == 3


def test_a_cache_that_cannot_be_written_decodes_in_memory(folder, tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.warns(UserWarning, match="decoding .* in memory"):
        data = cached_folder(folder, tmp_path / "root", None, False)
    assert_same(data, load_folder(folder))
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):  # another failure is no reason to decode in memory
        cached_folder(folder, tmp_path / "root", None, False)


def test_training_maps_a_store_and_eval_reads_it_again(cli, store, tmp_path):
    run = tmp_path / "run"
    out = cli("train", "--data", str(store), "--epochs", "1", "--model", "simple_cnn", "--out", str(run))
    assert out.returncode == 0, out.stderr
    final = json.loads((run / "result.json").read_text())["test_acc"]
    out = cli("eval", str(run), "--backend", "torch", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["test_acc"] == final


def test_large_images_train_on_random_resized_crops_and_eval_takes_their_centre(cli, tmp_path):
    """A folder of 112x96 photographs, kept at its size: random resized crops at 88 (0.875 of 96, in
    eights); `cnnlab eval` maps the store training packed and takes the same centre crops."""
    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "photos" / f"c{c}").mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 256, (96, 112, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / f"c{c}" / f"{i}.png")
    run = tmp_path / "run"
    args = ["--data", str(tmp_path / "photos"), "--epochs", "1", "--model", "simple_cnn"]
    out = cli("train", *args, "--out", str(run))
    assert out.returncode == 0, out.stderr
    assert "random resized crops of the 96x112 images at 88x88" in out.stdout
    config = json.loads((run / "config.json").read_text())
    assert (config["data"]["input_size"], config["data"]["resize_size"]) == ([3, 88, 88], 96)
    out = cli("eval", str(run), "--backend", "torch", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["test_acc"] == json.loads((run / "result.json").read_text())["test_acc"]


def test_which_runs_take_random_resized_crops(folder):
    """auto: a folder or a store at its own size of 96 px or more, for a model that crops; resized:
    asked for, but never of the small named datasets."""
    from cnnlab.data.base import Dataset
    from cnnlab.errors import CnnlabError
    from cnnlab.models import create_model
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.inputs import resized_crop_side as _resized_crop_side

    def side(height: int = 96, model: str = "simple_cnn", resized: bool = False, **config) -> int | None:
        images = torch.zeros(2, 3, height, height + 16, dtype=torch.uint8)
        data = Dataset("d", images, torch.tensor([0, 1]), images, torch.tensor([0, 1]), classes=["a", "b"])
        run = TrainConfig(model=model, **{"data": str(folder), **config})
        return _resized_crop_side(run, data, create_model(model, num_classes=2), resized, [])

    assert side() == 88 and side(146) == 128 and side(256) == 224  # 0.875 of the side, in eights
    assert side(88) is None and side(crop="pad") is None
    assert side(image_size=96) is None and side(resized=True) is None  # images the run resized
    assert side(image_size=96, crop="resized") == 88 and side(88, crop="resized") == 80
    assert side(model="knn") is None and side(model="linear", crop="resized") is None
    with pytest.raises(CnnlabError, match="--crop resized"):
        side(data="mnist5k", crop="resized")


def test_a_store_larger_than_the_memory_is_mapped(tmp_path):
    """A store of twice the machine's memory, its images a sparse file: it loads, and gathering a batch
    from its far end takes no memory of the process's own beyond the batch."""
    from cnnlab.data.base import Dataset
    from cnnlab.data.pack import write_store

    zeros = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    small = Dataset("tiny", zeros[:2], torch.tensor([0, 1]), zeros[2:], torch.tensor([0]), classes=["a", "b"])
    write_store(small, tmp_path / "s", "tiny")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    side = 1024
    count = 2 * total // (3 * side * side) + 1
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())
    manifest["shape"] = [3, side, side]
    labels = np.arange(count, dtype="<i8") % 2
    (tmp_path / "s" / labels_file("train")).write_bytes(labels.tobytes())
    manifest["splits"]["train"].update(
        count=count, class_counts=[int((labels == 0).sum()), int((labels == 1).sum())],
        labels_sha256=hashlib.sha256(labels.tobytes()).hexdigest(),
    )  # fmt: skip
    empty = hashlib.sha256(b"").hexdigest()
    manifest["splits"]["test"].update(count=0, class_counts=[0, 0], labels_sha256=empty, images_sha256=empty)
    (tmp_path / "s" / labels_file("test")).write_bytes(b"")
    (tmp_path / "s" / images_file("test")).write_bytes(b"")
    with open(tmp_path / "s" / images_file("train"), "r+b") as f:
        f.truncate(count * 3 * side * side)  # sparse: no block is written
    (tmp_path / "s" / MANIFEST).write_text(json.dumps(manifest))
    data = load_store(tmp_path / "s")
    assert data.train_images.numel() > 2 * total
    batch = data.train_images[torch.arange(count - 4, count)]
    assert batch.shape == (4, 3, side, side) and int(batch.sum()) == 0


def test_resized_crops_of_small_named_datasets_are_refused_in_one_line(cli, tmp_path):
    out = cli("train", "--crop", "resized", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--crop resized" in out.stderr
    assert not (tmp_path / "run").exists()
