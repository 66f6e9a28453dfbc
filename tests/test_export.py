"""`cnnlab export`: every family round-trips through ONNX (onnxruntime) and TorchScript or pt2 within
1e-4 relative, at batch sizes 1 and 3; the CLI's --json, its one-line errors and the missing extra."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch
from helpers import CLASSES, FAMILIES, make_run, relative_difference

import cnnlab
from cnnlab.export import MISSING_EXTRA, export_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export_runs")
    return {name: make_run(root, name, side) for name, side in FAMILIES}


def _reference(run: Path, x: torch.Tensor) -> torch.Tensor:
    """The unfused eval model's logits: the export must match what training produced, not only the
    fused model it was made from."""
    with torch.no_grad():
        return cnnlab.load_run(run)(x)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _ in FAMILIES])
def test_onnx_round_trip(runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / f"{name}.onnx"
    r = export_run(runs[name], "onnx", out)
    assert r["max_rel_diff"] <= 1e-4 and [c["batch"] for c in r["checks"]] == [1, 3]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3, *r["input_size"])
    got = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
    assert got.shape == (3, len(CLASSES))
    assert relative_difference(got, _reference(runs[name], x)) <= 1e-4
    # The metadata travels, beside the file and inside it.
    sidecar = json.loads(Path(str(out) + ".json").read_text())
    assert sidecar["classes"] == CLASSES and sidecar["input_size"] == r["input_size"]
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["cnnlab"])["mean"] == [0.5, 0.4, 0.3]


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _ in FAMILIES if name != "dcn_resnet20"])
def test_torchscript_round_trip(runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    out = tmp_path / f"{name}.ts"
    r = export_run(runs[name], "torchscript", out)
    assert r["max_rel_diff"] <= 1e-4
    extra = {"cnnlab.json": ""}
    with pytest.warns(DeprecationWarning):  # TorchScript is deprecated in torch 2.13; still loads
        loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["cnnlab.json"])["classes"] == CLASSES
    x = torch.randn(3, *r["input_size"])
    with torch.no_grad():
        got = loaded(x)
    assert relative_difference(got, _reference(runs[name], x)) <= 1e-4


def test_deformable_conv_does_not_trace_to_torchscript(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(cnnlab.CnnlabError, match=r"dcn_resnet20 cannot be traced to TorchScript.*pt2"):
        export_run(runs["dcn_resnet20"], "torchscript", tmp_path / "dcn.ts")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dcn_resnet20"])  # the one model TorchScript cannot take
def test_pt2_round_trip(runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    out = tmp_path / f"{name}.pt2"
    r = export_run(runs[name], "pt2", out)
    assert r["max_rel_diff"] <= 1e-4
    extra = {"cnnlab.json": ""}
    loaded = torch.export.load(str(out), extra_files=extra).module()
    assert json.loads(extra["cnnlab.json"])["std"] == [0.2, 0.2, 0.2]
    x = torch.randn(3, *r["input_size"])
    with torch.no_grad():
        assert relative_difference(loaded(x), _reference(runs[name], x)) <= 1e-4


@pytest.mark.slow
def test_cli_json(cli, runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sub" / "resnet20.ts"
    proc = cli("export", str(runs["resnet20"]), "--format", "torchscript", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)  # exactly one JSON object
    assert r["files"] == {"model": str(out), "metadata": str(out) + ".json"}
    assert out.exists() and r["max_rel_diff"] <= 1e-4 and r["tolerance"] == 1e-4
    assert {"max_abs_diff", "max_rel_diff", "checks", "exporter", "input_size"} <= set(r)


@pytest.mark.slow
def test_cli_missing_run_dir_is_one_line(cli, tmp_path: Path) -> None:
    proc = cli("export", str(tmp_path / "nope"), "--format", "torchscript", "--out", str(tmp_path / "m.ts"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_missing_extra(runs: dict[str, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    real_import = builtins.__import__

    def no_onnx(name: str, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime", "onnxscript"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    from cnnlab.cli import main

    assert main(["export", str(runs["resnet20"]), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err == f"cnnlab export: error: {MISSING_EXTRA}\n"
    assert MISSING_EXTRA == "ONNX export needs the export extra: pip install 'cnnlab[export]'"
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("format", ["torchscript", "pt2", "onnx"])
def test_an_unwritable_out_is_one_line_naming_it(runs: dict[str, Path], tmp_path: Path, format: str) -> None:
    (tmp_path / "file").write_text("a file where a folder should be")
    out = tmp_path / "file" / "model.bin"
    with pytest.raises(cnnlab.CnnlabError, match=r"cannot write .*file/model\.bin") as info:
        export_run(runs["resnet20"], format, out)
    assert "does not export" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("format", "target"),
    [("torchscript", "torch.jit.trace"), ("pt2", "torch.export.export"), ("onnx", "torch.onnx.export")],
)
@pytest.mark.parametrize("error", [ZeroDivisionError("a bug"), OSError(28, "No space left on device")])
def test_a_bug_or_an_oserror_in_the_exporter_is_not_relabelled(
    runs: dict[str, Path], tmp_path: Path, monkeypatch, format: str, target: str, error: Exception
) -> None:
    def broken(*args, **kwargs):
        raise error

    if format == "onnx":
        pytest.importorskip("onnxscript")
    monkeypatch.setattr(target, broken)
    with pytest.raises(type(error)):
        export_run(runs["resnet20"], format, tmp_path / "m.bin")


def test_the_disk_is_not_blamed_on_torchscript(runs: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """A failed write names the file, not the model: the model is serialized in memory first."""

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fdopen", full)
    with pytest.raises(cnnlab.CnnlabError, match=r"disk full while writing .*m\.ts") as info:
        export_run(runs["resnet20"], "torchscript", tmp_path / "m.ts")
    assert "TorchScript" not in str(info.value)


def test_a_graph_onnxruntime_cannot_run(runs: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    not_implemented = ort.capi.onnxruntime_pybind11_state.NotImplemented

    def session(*args, **kwargs):
        raise not_implemented("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation")

    monkeypatch.setattr(ort, "InferenceSession", session)
    with pytest.raises(cnnlab.CnnlabError, match=r"onnxruntime cannot run it .*NOT_IMPLEMENTED"):
        export_run(runs["resnet20"], "onnx", tmp_path / "m.onnx")
