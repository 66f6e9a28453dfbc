"""Inference engines (`cnnlab.infer`): every engine and precision of every family equals the unfused fp32
model within its stated tolerance; the run's ONNX file is built once and rebuilt when the weights change;
``auto`` falls back to PyTorch when an engine is not installed, and `cnnlab bench --mode infer` times what
`cnnlab eval` runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import FAMILIES, make_run, relative_difference

import cnnlab
from cnnlab import infer
from cnnlab.bench import bench
from cnnlab.cli import main as cnnlab_main
from cnnlab.errors import CnnlabError

PATHS = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
]
CPU = torch.device("cpu")


# GoogLeNet at the export tests' 15 px pools a 2x2 map with a 3x3 window, which OpenVINO refuses
# (test_an_engine_that_refuses_a_model_hands_it_on); 32 px is the smallest it takes.
SIDES = {**dict(FAMILIES), "googlenet": 32}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer_runs")
    return {name: make_run(root, name, side) for name, side in SIDES.items()}


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled to `infer.installed`."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in modules else find_spec(name, *a)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIDES))
def test_every_engine_equals_the_fp32_model_within_its_tolerance(runs: dict[str, Path], name: str) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    x = torch.randn(3, *json.loads((runs[name] / "config.json").read_text())["data"]["input_size"])
    with torch.no_grad():
        expected = cnnlab.load_run(runs[name])(x)  # unfused, eager, fp32: what training produced
    for backend, precision in PATHS:
        engine = infer.load_engine(runs[name], backend, precision, "cpu")
        assert (engine.backend, engine.precision, engine.note) == (backend, precision, None)
        got = engine(x)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        assert relative_difference(got, expected) <= infer.TOLERANCES[precision], (backend, precision)


def test_the_tolerances_can_fail() -> None:
    """The negative control: a bf16 rounding of the logits already exceeds the fp32 tolerance."""
    x = torch.randn(4, 10) * 10
    assert relative_difference(x.bfloat16().float(), x) > infer.TOLERANCES["fp32"]
    assert relative_difference(x.bfloat16().float(), x) <= infer.TOLERANCES["bf16"]


@pytest.mark.slow
def test_the_onnx_file_is_built_once_and_rebuilt_when_the_weights_change(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    run = make_run(tmp_path, "resnet20", 8)
    x = torch.randn(2, 3, 8, 8)
    first = infer.load_engine(run, "onnxruntime", "fp32", "cpu")
    onnx = run / infer.CACHE_DIR / "model.onnx"
    stamp = onnx.stat().st_mtime_ns
    assert relative_difference(infer.load_engine(run, "onnxruntime", "fp32", "cpu")(x), first(x)) == 0
    assert onnx.stat().st_mtime_ns == stamp  # reused, not exported again
    model = cnnlab.load_run(run)
    with torch.no_grad():
        model.fc.weight.mul_(-1)  # new weights, same shapes
    cnnlab.rundir.save_weights(model, run / cnnlab.rundir.WEIGHTS)
    second = infer.load_engine(run, "onnxruntime", "fp32", "cpu")
    assert onnx.stat().st_mtime_ns != stamp
    with torch.no_grad():
        assert relative_difference(second(x), model(x)) <= infer.TOLERANCES["fp32"]
    assert relative_difference(second(x), first(x)) > 0.1  # the old file would have answered this


@pytest.mark.slow
def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    run = make_run(tmp_path, "resnet20", 8)
    infer.load_engine(run, "onnxruntime", "fp32", "cpu")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = cnnlab.load_run(run)(x)
    sidecar = run / infer.CACHE_DIR / "model.onnx.json"
    for damage in ("{not json", "[]"):
        sidecar.write_text(damage)
        assert relative_difference(infer.load_engine(run, "onnxruntime", "fp32", "cpu")(x), expected) <= 1e-4
        assert "weights_sha256" in json.loads(sidecar.read_text())["made_from"]  # written anew


def test_auto_takes_torch_when_no_engine_is_installed(tmp_path: Path, monkeypatch) -> None:
    hide(monkeypatch, "openvino", "onnxruntime")
    run = make_run(tmp_path, "resnet20", 8)
    assert infer.resolve("auto", "fp32", CPU, cnnlab.load_run(run)) == "torch"
    engine = infer.load_engine(run, device="cpu")
    assert engine.backend == "torch" and engine.note is None and not (run / infer.CACHE_DIR).exists()


def test_auto_order(runs: dict[str, Path], monkeypatch) -> None:
    """onnxruntime first in fp32, OpenVINO first in bf16, PyTorch when neither is installed."""
    model = cnnlab.load_run(runs["resnet20"])
    monkeypatch.setattr(infer, "installed", lambda name: True)
    assert infer.resolve("auto", "fp32", CPU, model) == "onnxruntime"
    assert infer.resolve("auto", "bf16", CPU, model) == "openvino"
    monkeypatch.setattr(infer, "installed", lambda name: name == "onnxruntime")
    assert infer.resolve("auto", "bf16", CPU, model) == "torch"
    monkeypatch.setattr(infer, "installed", lambda name: False)
    assert infer.resolve("auto", "fp32", CPU, model) == "torch"


def test_a_missing_engine_asked_for_is_one_line(runs: dict[str, Path], monkeypatch, capsys) -> None:
    hide(monkeypatch, "openvino")
    with pytest.raises(CnnlabError, match=r"needs the infer extra: pip install 'cnnlab\[infer\]'"):
        infer.load_engine(runs["resnet20"], "openvino", device="cpu")
    assert cnnlab_main(["predict", str(runs["resnet20"]), "any.png", "--backend", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "cnnlab[infer]" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("backend", "precision", "device", "message"),
    [
        ("onnxruntime", "bf16", "cpu", "fp32 only"),
        ("openvino", "fp32", "cuda", "runs on the CPU"),
        ("tensorrt", "fp32", "cpu", "unknown backend"),
        ("torch", "int4", "cpu", "unknown precision"),
    ],
)
def test_impossible_choices_are_refused(runs, monkeypatch, backend, precision, device, message) -> None:
    monkeypatch.setattr(infer, "installed", lambda name: True)
    model = cnnlab.load_run(runs["resnet20"])
    with pytest.raises(CnnlabError, match=message):
        infer.resolve(backend, precision, torch.device(device), model)


def test_a_model_that_stores_its_data_runs_on_torch(monkeypatch) -> None:
    monkeypatch.setattr(infer, "installed", lambda name: True)
    knn = cnnlab.create_model("knn", num_classes=3, in_chans=1)
    assert infer.resolve("auto", "fp32", CPU, knn) == "torch"


def test_auto_falls_back_to_torch_when_the_export_fails(tmp_path: Path, monkeypatch) -> None:
    if not infer.installed("onnxruntime"):
        pytest.skip("no ONNX engine installed")

    def unexportable(*args, **kwargs):
        raise CnnlabError("resnet20 does not export to ONNX: an operator it does not know")

    monkeypatch.setattr(infer, "build_onnx", unexportable)
    run = make_run(tmp_path, "resnet20", 8)
    engine = infer.load_engine(run, "auto", "fp32", "cpu")
    assert engine.backend == "torch" and "does not export" in engine.note
    with pytest.raises(CnnlabError, match="does not export"):
        infer.load_engine(run, "onnxruntime", "fp32", "cpu")


@pytest.mark.slow
@pytest.mark.slow
def test_an_engine_that_refuses_a_model_hands_it_on(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    run = make_run(tmp_path, "googlenet", 15)
    with pytest.raises(CnnlabError, match=r"openvino cannot run .*model\.onnx: .*MaxPool"):
        infer.load_engine(run, "openvino", "fp32", "cpu")
    engine = infer.load_engine(run, "auto", "bf16", "cpu")
    assert engine.backend == "torch" and "openvino cannot run" in engine.note
    x = torch.randn(2, 3, 15, 15)
    with torch.no_grad():
        assert relative_difference(engine(x), cnnlab.load_run(run)(x)) <= infer.TOLERANCES["bf16"]


def test_bench_times_what_eval_runs() -> None:
    quick = {
        "mode": "infer",
        "batch_size": 2,
        "steps": 1,
        "warmup": 0,
        "min_seconds": 0,
        "input_size": (3, 8, 8),
    }
    row = bench("resnet20", **quick)
    model = cnnlab.create_model("resnet20")
    assert [row["backend"], row["precision"]] == [infer.resolve("auto", "fp32", CPU, model), "fp32"]
    naive = bench("resnet20", naive=True, **quick)
    assert [naive["backend"], naive["precision"]] == ["torch", "fp32"]
