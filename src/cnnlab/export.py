"""Weights out: a run's model as a file that runs without cnnlab (ONNX, TorchScript, torch.export).

    export_run("runs/resnet20-mnist5k-...", "onnx", "resnet20.onnx")

The exported model is the run's model in eval mode with every BatchNorm folded into its convolution
(``fuse_for_inference``), as ``cnnlab eval`` runs it. It takes normalized float images of shape
(N, C, H, W) at the run's input size, N free, and returns logits (N, classes). Every export is loaded
back and checked against the PyTorch model on random inputs at batch sizes 1 and 3 (3 proves the
batch axis is not baked in); a relative difference above ``TOLERANCE`` is a CnnlabError.

Formats and the choices made (torch 2.13, measured on every family):

- ``onnx``: ``torch.onnx.export(dynamo=True)`` (the torch.export-based exporter, needs onnxscript),
  opset 18, input "images", output "logits", batch axis dynamic. The legacy TorchScript-based
  exporter (``dynamo=False``) fails on VGG, AlexNet and SimpleCNN, whose ``AdaptiveAvgPool2d``
  output size does not divide the input size, so it is not used. Checked with onnxruntime.
- ``torchscript``: ``torch.jit.trace`` + ``torch.jit.save``. TorchScript is deprecated in torch 2.13
  but still loads from C++ and older Pythons; DeformConv2d (dcn_resnet*) does not trace.
- ``pt2``: ``torch.export.export`` with a dynamic batch dimension + ``torch.export.save``; the
  successor of TorchScript, works for every family. Load with ``torch.export.load(f).module()``.

What inference needs besides the weights (classes, mean, std, input size) is written next to the
file as FILE.json and also inside it: ONNX ``metadata_props["cnnlab"]``, the extra file
``cnnlab.json`` of a TorchScript or pt2 archive.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CnnlabError
from .fuse import fuse_for_inference
from .runconfig import DataInfo, RunConfig
from .rundir import atomic_write, load_run, read_config, write_error, write_json
from .text import first_line

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "pt2": ".pt2"}
OPSET = 18  # the lowest opset the dynamo exporter emits natively; onnxruntime >= 1.14 runs it
TOLERANCE = 1e-4  # relative: max |exported - torch| / max |torch|
CHECK_BATCHES = (1, 3)
MISSING_EXTRA = "ONNX export needs the export extra: pip install 'cnnlab[export]'"
METADATA_KEY = "cnnlab"

# What the exporters raise for a model they cannot handle. Anything else (an OSError, a bug in
# cnnlab) keeps its own type: relabelled as "does not export", a full disk would send users astray.
# torch.jit has no error type of its own for an unsupported call and raises RuntimeError; it is
# caught only around tracing and serializing into memory, where the disk plays no part.
TORCHSCRIPT_ERRORS = (RuntimeError, torch.jit.Error, torch.jit.TracingCheckError)


def exporter_errors() -> tuple[type[Exception], ...]:
    # Imported when exporting: torch._dynamo and torch.onnx take a second, and every command that
    # builds the CLI's parser imports this module for FORMATS.
    import torch._dynamo.exc
    import torch.onnx.errors
    from torch.fx.experimental.symbolic_shapes import ConstraintViolationError, GuardOnDataDependentSymNode

    return (
        torch._dynamo.exc.TorchDynamoException,  # torch.export: Unsupported, UserError, TorchRuntimeError
        ConstraintViolationError,  # e.g. a batch axis the model bakes in
        GuardOnDataDependentSymNode,  # control flow on tensor values
        torch.onnx.errors.OnnxExporterError,  # TorchExportError, ConversionError, DispatchError
    )


def metadata(model: nn.Module, config: RunConfig) -> dict[str, Any]:
    data: DataInfo = model.data_config  # type: ignore[attr-defined]
    return {
        "model": config.model,
        "classes": data.classes,
        "mean": data.mean,
        "std": data.std,
        "input_size": list(data.input_size),
        # A converted ImageNet model's evaluation resize: shorter side, then the centre crop.
        **(
            {"resize_size": data.resize_size, "interpolation": data.interpolation}
            if data.resize_size is not None
            else {}
        ),
        "input": "images",
        "output": "logits",
        "layout": "NCHW float32, (pixel / 255 - mean) / std",
    }


def import_onnx() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter imports it itself)
    except ImportError:
        raise CnnlabError(MISSING_EXTRA) from None
    return onnxruntime


def export_onnx(model: nn.Module, example: torch.Tensor, out: Path, meta: dict[str, Any]) -> Any:
    onnxruntime = import_onnx()
    batch = torch.export.Dim("batch", min=1)
    # The exporter prints progress lines on stdout, which would break `--json`, and logs warnings
    # (torchvision not installed, ...) about internals a user cannot act on.
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                report=False,
                verbose=False,
            )
            # Into the model before it is written: a load-edit-save would serialize the weights twice.
            program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
            try:  # to the path: a model over 2 GB goes out with its weights in a second file
                program.save(str(out), external_data=False)
            except OSError as e:
                raise write_error(out, e) from e
    finally:
        onnx_log.setLevel(level)
    ort_errors = onnxruntime.capi.onnxruntime_pybind11_state
    try:  # an operator or a graph that onnxruntime does not implement: the file is written, not checked
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    except (ort_errors.NotImplemented, ort_errors.InvalidGraph) as e:
        raise CnnlabError(
            f"{meta['model']} exports to {out}, but onnxruntime cannot run it to check it: "
            f"{first_line(e)[:200]}"
        ) from None
    return lambda x: torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])


def _export_torchscript(model: nn.Module, example: torch.Tensor, out: Path, meta: dict[str, Any]) -> Any:
    # Deprecation and tracer warnings (input checks read as constants) are torch's, not the user's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(model, (example,))
            # Into memory first: a RuntimeError here is the model's (DeformConv2d's autograd.Function
            # traces but cannot be saved), never the disk's, which atomic_write names below.
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={"cnnlab.json": json.dumps(meta)})
        except TORCHSCRIPT_ERRORS as e:
            raise CnnlabError(
                f"{meta['model']} cannot be traced to TorchScript ({first_line(e)[:200]}); "
                "use --format pt2 or onnx"
            ) from None
        atomic_write(out, buffer.getvalue())
        return torch.jit.load(str(out))


def _export_pt2(model: nn.Module, example: torch.Tensor, out: Path, meta: dict[str, Any]) -> Any:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files={"cnnlab.json": json.dumps(meta)})
        atomic_write(out, buffer.getvalue())
        return torch.export.load(str(out)).module()


def compare_outputs(model: nn.Module, exported: Any, input_size: list[int]) -> list[dict[str, float]]:
    """Max absolute and relative difference of the exported model's logits, per check batch size."""
    generator = torch.Generator().manual_seed(0)
    checks = []
    for n in CHECK_BATCHES:
        x = torch.randn(n, *input_size, generator=generator)
        with torch.no_grad():
            ref = model(x)
            got = exported(x)
        if tuple(got.shape) != tuple(ref.shape):
            raise CnnlabError(f"the exported model returned shape {tuple(got.shape)} for {tuple(ref.shape)}")
        diff = float((got - ref).abs().max())
        # Relative to the largest logit: an untrained net's logits can be ~1e-13, and an elementwise
        # ratio would then measure noise.
        scale = float(ref.abs().max())
        checks.append({"batch": n, "max_abs_diff": diff, "max_rel_diff": diff / scale if scale else diff})
    return checks


def export_run(
    run_dir: str | os.PathLike[str], format: str = "onnx", out: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Export a run's fused eval model to ``out`` (default RUN_DIR/model.onnx|.ts|.pt2), write the
    metadata to ``out + ".json"``, load the file back and check it against PyTorch.

    Returns the files written, the exporter used and the measured differences; raises CnnlabError
    for an unknown format, a missing extra, a model that does not export, a file that cannot be
    written, or a difference above ``TOLERANCE``.
    """
    if format not in FORMATS:
        raise CnnlabError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        import_onnx()  # before loading anything, so a missing extra is the only message
    config = read_config(run_dir)
    model = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / f"model{SUFFIXES[format]}"
    if out.is_dir():
        raise CnnlabError(f"--out {out} is a folder; give a file name, e.g. {out}/model{SUFFIXES[format]}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder should be, a read-only place
        raise write_error(out, e) from e
    meta = metadata(model, config)
    fused = fuse_for_inference(model).eval()
    example = torch.zeros(2, *meta["input_size"])  # batch 2: 1 could be specialized as a constant
    exporter = {"onnx": export_onnx, "torchscript": _export_torchscript, "pt2": _export_pt2}[format]
    errors = exporter_errors()
    try:
        exported = exporter(fused, example, out, meta)
    except errors as e:  # an operator the exporter does not know: name it, keep it one line
        raise CnnlabError(f"{config.model} does not export to {format}: {first_line(e)[:300]}") from None
    checks = compare_outputs(fused, exported, meta["input_size"])
    meta_path = out.with_name(out.name + ".json")
    write_json(meta_path, {**meta, "format": format})
    result = {
        "run_dir": str(run_dir),
        "model": config.model,
        "format": format,
        "exporter": {
            "onnx": f"torch.onnx.export(dynamo=True), opset {OPSET}",
            "torchscript": "torch.jit.trace",
            "pt2": "torch.export.export",
        }[format],
        "files": {"model": str(out), "metadata": str(meta_path)},
        "input_size": meta["input_size"],
        "classes": len(meta["classes"]),
        "checks": checks,
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
        "max_rel_diff": max(c["max_rel_diff"] for c in checks),
        "tolerance": TOLERANCE,
        "torch": torch.__version__,
    }
    if result["max_rel_diff"] > TOLERANCE:
        raise CnnlabError(
            f"the exported {format} model differs from PyTorch by {result['max_rel_diff']:.2e} relative "
            f"(max abs {result['max_abs_diff']:.2e}), above the tolerance {TOLERANCE:g}; {out} is kept"
        )
    return result
