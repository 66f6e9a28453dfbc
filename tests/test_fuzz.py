"""Every reader of files a user hands to cnnlab, fed random bytes and mutations of valid files.

The property is the same everywhere: a reader returns a valid result or raises a one-line
`CnnlabError` naming the file; a raw numpy, PIL, pickle, struct, zip or safetensors exception is a bug.
Each example runs in a fresh temporary folder; the deadline turns a reader that crawls (or loops on
a crafted length field) into a failure instead of a slow suite.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import pickle
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from helpers import idx_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab import rundir
from cnnlab.data.cifar import load_cifar
from cnnlab.data.folder import load_folder
from cnnlab.data.idx import load_idx, read_idx
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runconfig import DataInfo

T = TypeVar("T")

# Modest budgets: the whole file should take seconds, not minutes, on a shared two-core machine.
FUZZ = settings(
    max_examples=int(os.environ.get("CNNLAB_FUZZ_EXAMPLES", "100")),  # raise it for a deeper search
    deadline=3000,  # ms per example; generous for a loaded CI machine, far below a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # The same examples on every run of the suite, so a failure there is reproducible; a deeper search
    # (CNNLAB_FUZZ_EXAMPLES=2000) draws new ones each time.
    derandomize="CNNLAB_FUZZ_EXAMPLES" not in os.environ,
)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` truncated, with bytes flipped, with junk appended or inserted, or replaced by junk.

    Flips and cuts favour the first 64 bytes, where the headers and length fields live: a flip in
    the middle of the pixel data of a large file only yields another valid file.
    """
    n = len(valid)

    def position() -> int:
        return draw(st.one_of(st.integers(0, min(63, n - 1)), st.integers(0, n - 1)))

    kind = draw(st.sampled_from(["truncate", "flip", "append", "insert", "random"]))
    if kind == "truncate":
        return valid[: position()]
    if kind == "flip":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 8))):
            data[position()] ^= draw(st.integers(1, 255))
        return bytes(data)
    junk = draw(st.binary(min_size=1, max_size=64))
    if kind == "append":
        return valid + junk
    if kind == "insert":
        at = position()
        return valid[:at] + junk + valid[at:]
    return draw(st.binary(max_size=256))


def cnnlab_errors_only(call: Callable[[], T]) -> T | None:
    """Run ``call``; a CnnlabError (one line) is a fine outcome, any other exception fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped images and torch's pickle-protocol notes
            return call()
    except CnnlabError as e:
        message = str(e)
        assert message and "\n" not in message, f"not one line: {message!r}"
        return None


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one folder for all of a test's examples)."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ---------------------------------------------------------------- IDX


IDX_IMAGES = idx_bytes(np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4))
IDX_LABELS = idx_bytes(np.array([0, 7, 9], dtype=np.uint8))
IDX_VALID = [IDX_IMAGES, IDX_LABELS, gzip.compress(IDX_IMAGES), gzip.compress(IDX_LABELS)]


@FUZZ
@given(data=st.sampled_from(IDX_VALID).flatmap(mutated), ndim=st.sampled_from([None, 1, 3]))
def test_read_idx_fuzz(data: bytes, ndim: int | None) -> None:
    with scratch() as folder:
        path = folder / "f-idx3-ubyte"
        path.write_bytes(data)
        tensor = cnnlab_errors_only(lambda: read_idx(path, ndim=ndim))
        if tensor is not None:
            assert tensor.dtype == torch.uint8 and (ndim is None or tensor.dim() == ndim)


@FUZZ
@given(which=st.integers(0, 3), data=st.data())
def test_load_idx_fuzz(which: int, data: st.DataObject) -> None:
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
    names.append("t10k-labels-idx1-ubyte")
    with scratch() as folder:
        for i, name in enumerate(names):
            valid = IDX_IMAGES if "images" in name else IDX_LABELS
            (folder / name).write_bytes(data.draw(mutated(valid)) if i == which else valid)
        ds = cnnlab_errors_only(lambda: load_idx(folder))
        if ds is not None:
            assert len(ds.train_images) == len(ds.train_labels) and int(ds.train_labels.max()) < 10


# ---------------------------------------------------------------- CIFAR


def _cifar_files() -> dict[str, bytes]:
    """A tiny but complete CIFAR-10 python folder (two images per batch), and its archive, as bytes."""
    rng = np.random.default_rng(0)
    names = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    files = {"batches.meta": pickle.dumps(names, protocol=3)}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
        files[name] = pickle.dumps(batch, protocol=3)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return {**files, "cifar-10-python.tar.gz": archive.getvalue()}


CIFAR_FILES = _cifar_files()


def test_cifar_fuzz_seed_is_valid(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(CIFAR_FILES[archive.name])
    assert load_cifar(archive).train_images.shape == (10, 3, 32, 32)


@FUZZ
@given(data=st.data())
def test_cifar_batch_fuzz(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(["data_batch_1", "test_batch", "batches.meta"]))
    with scratch() as parent:
        folder = parent / "cifar-10-batches-py"
        folder.mkdir()
        for name, content in CIFAR_FILES.items():
            if not name.endswith(".tar.gz"):
                (folder / name).write_bytes(data.draw(mutated(content)) if name == target else content)
        ds = cnnlab_errors_only(lambda: load_cifar(folder))
        if ds is not None:
            assert ds.train_images.shape[1:] == (3, 32, 32) and len(ds.classes) == 10


@FUZZ
@given(data=st.data())
def test_cifar_archive_fuzz(data: st.DataObject) -> None:
    with scratch() as parent:
        archive = parent / "cifar-10-python.tar.gz"
        archive.write_bytes(data.draw(mutated(CIFAR_FILES["cifar-10-python.tar.gz"])))
        cnnlab_errors_only(lambda: load_cifar(archive))
        # Whatever happened, no half-extracted temporary folder is left beside the archive.
        assert not [p for p in parent.iterdir() if p.name.startswith(".extract-")]


# ---------------------------------------------------------------- image folders


def _encoded(mode: str, fmt: str) -> bytes:
    rng = np.random.default_rng(len(mode) + len(fmt))
    pixels = rng.integers(0, 256, (6, 5, len(mode)) if len(mode) > 1 else (6, 5), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, format=fmt)
    return out.getvalue()


REAL_IMAGES = [_encoded("RGB", "PNG"), _encoded("L", "PNG"), _encoded("RGBA", "PNG"), _encoded("RGB", "JPEG")]
IMAGE_BYTES = st.one_of(st.sampled_from(REAL_IMAGES).flatmap(mutated), st.binary(max_size=200))


@FUZZ
@given(
    files=st.lists(st.tuples(st.integers(0, 1), st.sampled_from([".png", ".jpg"]), IMAGE_BYTES), max_size=4),
    strict=st.booleans(),
)
def test_image_folder_fuzz(files: list[tuple[int, str, bytes]], strict: bool) -> None:
    with scratch() as root:
        for label in (0, 1):  # one good image per class, so a skipped file still leaves a dataset
            (root / f"class{label}").mkdir()
            (root / f"class{label}" / "good.png").write_bytes(REAL_IMAGES[label])
        for i, (label, suffix, content) in enumerate(files):
            (root / f"class{label}" / f"fuzz{i}{suffix}").write_bytes(content)
        ds = cnnlab_errors_only(lambda: load_folder(root, strict=strict))
        if ds is not None:
            n = len(ds.train_labels) + len(ds.test_labels)
            assert 2 <= n <= 2 + len(files) and ds.train_images.dtype == torch.uint8


# ---------------------------------------------------------------- run directories and checkpoints


@functools.cache
def run_files() -> dict[str, bytes]:
    """config.json, model.safetensors and checkpoint.pt of a small valid run, as bytes."""
    with scratch() as run:
        return _write_run(run)


def _write_run(run: Path) -> dict[str, bytes]:
    model = create_model("linear", num_classes=3, in_chans=1, image_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(2, 1, 8, 8)).sum().backward()
    opt.step()
    rundir.write_json(
        run / rundir.CONFIG,
        {
            "format_version": rundir.FORMAT_VERSION,
            "model": "linear",
            "model_kwargs": {"image_size": 8},
            "num_classes": 3,
            "in_chans": 1,
            "data": {
                "name": "toy",
                "source": "toy",
                "classes": ["a", "b", "c"],
                "mean": [0.5],
                "std": [0.25],
                "input_size": [1, 8, 8],
            },
        },
    )
    rundir.save_weights(model, run / rundir.WEIGHTS)
    state = {
        "format_version": rundir.FORMAT_VERSION,
        "epoch": 1,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "metrics": [{"epoch": 1.0, "train_loss": 0.5}],
    }
    rundir.save_checkpoint(state, run / rundir.CHECKPOINT)
    assert rundir.load_run(run).data_config.classes == ["a", "b", "c"]
    return {p.name: p.read_bytes() for p in run.iterdir()}


@FUZZ
@given(data=st.data())
def test_load_run_fuzz(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from([rundir.CONFIG, rundir.WEIGHTS]))
    with scratch() as run:
        for name, content in run_files().items():
            (run / name).write_bytes(data.draw(mutated(content)) if name == target else content)
        model = cnnlab_errors_only(lambda: rundir.load_run(run))
        if model is not None:
            assert not model.training and isinstance(model.data_config, DataInfo)


@FUZZ
@given(data=st.data())
def test_load_weights_fuzz(data: st.DataObject) -> None:
    with scratch() as run:
        path = run / rundir.WEIGHTS
        path.write_bytes(data.draw(mutated(run_files()[rundir.WEIGHTS])))
        state = cnnlab_errors_only(lambda: rundir.load_weights(path))
        if state is not None:
            assert all(isinstance(v, torch.Tensor) for v in state.values())


@FUZZ
@given(data=st.data())
def test_load_checkpoint_fuzz(data: st.DataObject) -> None:
    with scratch() as run:
        path = run / rundir.CHECKPOINT
        path.write_bytes(data.draw(mutated(run_files()[rundir.CHECKPOINT])))
        # A flip inside a tensor's bytes still loads (the zip's CRCs are not checked): that is fine.
        cnnlab_errors_only(lambda: rundir.load_checkpoint(path))


@FUZZ
@given(data=st.binary(max_size=512))
def test_config_json_fuzz_as_text(data: bytes) -> None:
    """Arbitrary bytes, and arbitrary valid JSON, as config.json: read_config and load_run never crash."""
    with scratch() as run:
        (run / rundir.CONFIG).write_bytes(data)
        cnnlab_errors_only(lambda: rundir.load_run(run))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.mark.slow
@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(["model", "num_classes", "in_chans", "model_kwargs", "data", "format_version"]),
        JSON_VALUES,
        min_size=1,
        max_size=3,
    )
)
def test_config_json_valid_but_wrong(changes: dict[str, Any]) -> None:
    """Well-formed JSON with a field of the wrong kind (a hand edit) is a RunDirError, not a KeyError."""
    with scratch() as run:
        for name, content in run_files().items():
            (run / name).write_bytes(content)
        config = {**json.loads(run_files()[rundir.CONFIG]), **changes}
        (run / rundir.CONFIG).write_text(json.dumps(config))
        cnnlab_errors_only(lambda: rundir.load_run(run))


# ---------------------------------------------------------------- packed stores


@functools.cache
def store_files() -> dict[str, bytes]:
    """Every file of a small valid store (2 classes, 1x4x4 images), as bytes."""
    from cnnlab.data.base import Dataset
    from cnnlab.data.pack import write_store

    images = torch.arange(5 * 16, dtype=torch.uint8).reshape(5, 1, 4, 4)
    labels = torch.tensor([0, 1, 0, 1, 1])
    data = Dataset("tiny", images[:3], labels[:3], images[3:], labels[3:], classes=["a", "b"], hflip=False)
    with scratch() as d:
        write_store(data, d / "store", "tiny")
        return {p.name: p.read_bytes() for p in (d / "store").iterdir()}


def load_store_files(files: dict[str, bytes]) -> None:
    from cnnlab.data.store import load_store, verify_store

    with scratch() as d:
        for name, content in files.items():
            (d / name).write_bytes(content)
        data = cnnlab_errors_only(lambda: load_store(d))
        if data is not None:  # what loads is whole: every image and label can be read
            assert data.train_images.shape[0] == data.train_labels.shape[0]
            assert int(data.train_images.sum()) >= 0 and data.train_labels.max() < data.num_classes
        cnnlab_errors_only(lambda: verify_store(d))


@FUZZ
@given(which=st.sampled_from(sorted(store_files())), data=st.data())
def test_store_files_fuzz(which: str, data: st.DataObject) -> None:
    """A store with one file truncated, flipped, extended or replaced: it loads whole, or one line."""
    files = dict(store_files())
    files[which] = data.draw(mutated(files[which]))
    load_store_files(files)


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["format", "version", "classes", "shape", "mean", "std", "hflip", "splits", "skipped"]
        ),
        JSON_VALUES,
        min_size=1,
        max_size=3,
    )
)
def test_store_manifest_valid_but_wrong(changes: dict[str, Any]) -> None:
    """Well-formed JSON with a field of the wrong kind in manifest.json (a hand edit): one line."""
    files = dict(store_files())
    files["manifest.json"] = json.dumps({**json.loads(files["manifest.json"]), **changes}).encode()
    load_store_files(files)


# ---------------------------------------------------------------- recipe files (train --config)

RECIPE_YAML = (
    b"model: resnet20\nlr: 0.05\nmilestones: [0.5, 0.75]\nmodel_kwargs: {dropout: 0.1}\nmixup: 0.2\n"
)
RECIPE_JSON = json.dumps(
    {"model": "resnet20", "weight_decay": 5e-4, "val_fraction": 0.1, "keep": "best"}
).encode()


@FUZZ
@given(name=st.sampled_from(["r.yaml", "r.json"]), data=st.data())
def test_recipe_file_fuzz(name: str, data: st.DataObject) -> None:
    """Random bytes and mutations of valid YAML and JSON recipes: settings or one CnnlabError line."""
    from cnnlab.train.config_file import read_config_file

    raw = data.draw(mutated(RECIPE_YAML if name.endswith("yaml") else RECIPE_JSON))
    with scratch() as d:
        (d / name).write_bytes(raw)
        values = cnnlab_errors_only(lambda: read_config_file(d / name))
    assert values is None or isinstance(values, dict)


@FUZZ
@given(
    settings=st.dictionaries(
        st.sampled_from(["lr", "epochs", "seed", "milestones", "model_kwargs", "keep", "optimizer", "device",
                         "val-fraction", "patience", "schedule", "precision", "model", "bogus"]),
        JSON_VALUES | st.sampled_from(["resnet20", "best", "cpu", "cuda:x", "adamw", "exponential", "fp16"]),
        max_size=5,
    )
)  # fmt: skip
def test_recipe_file_valid_but_wrong(settings: dict[str, Any]) -> None:
    """Well-formed JSON with values of any kind: what the reader lets through meets the trainer's own
    checks (the settings together, the recipe, the device and precision) with one line at most."""
    from cnnlab.runtime import resolve_device, resolve_precision
    from cnnlab.train.config import TrainConfig, apply_recipe
    from cnnlab.train.config_file import read_config_file

    def as_the_trainer_takes_it(values: dict[str, Any]) -> None:
        config = apply_recipe(TrainConfig(**{"model": "resnet20", **values}))
        resolve_precision(config.precision, resolve_device(config.device))

    with scratch() as d:
        (d / "r.json").write_text(json.dumps(settings))
        values = cnnlab_errors_only(lambda: read_config_file(d / "r.json"))
    if values is not None:
        cnnlab_errors_only(lambda: as_the_trainer_takes_it(values))
