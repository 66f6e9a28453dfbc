"""Inference engines: a trained model's forward pass in PyTorch, onnxruntime or OpenVINO, behind one call.

    engine = load_engine("runs/resnet20-mnist5k-...")    # the fastest installed engine, in fp32
    logits = engine(images)    # normalized float (N, C, H, W) on engine.device -> float32 (N, classes)

Every engine runs the model as ``cnnlab eval`` always has: eval mode, BatchNorm folded into the convs
(``fuse_for_inference``). ``torch`` runs it eagerly, channels-last where that is faster, under autocast
for bf16. ``onnxruntime`` (CPU provider) and ``openvino`` (CPU plugin) run the ONNX file of the fused
model, exported once per run into ``RUN_DIR/inference/model.onnx`` and checked against PyTorch as
``cnnlab export`` checks its files; ``model.onnx.json`` beside it holds the digests of the weights and
the config it was made from, so changed weights rebuild it.

Precision: fp32 unless bf16 is asked for (PyTorch's autocast or OpenVINO's inference precision hint;
onnxruntime's CPU provider runs fp32 only). bf16 runs at about twice the speed on a CPU that computes it
natively, but in ``benchmarks/inference.py`` it moved the test top-1 of two of the six models by more
than the 0.1 points that would let it be the default. Backend ``auto`` takes, on the CPU, the first
installed engine of ``AUTO_ORDER`` for the precision (onnxruntime for fp32, OpenVINO for bf16; both come
with ``pip install 'cnnlab[infer]'``), and PyTorch on a GPU or for a model that stores its training set
(k-NN).

The logits of each path differ from the unfused fp32 PyTorch model by at most ``TOLERANCES[precision]``
of the largest logit: fp32 paths by float32 rounding, bf16 paths by its 8-bit mantissa
(tests/test_infer.py checks every family).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CnnlabError
from .export import TOLERANCE, compare_outputs, export_onnx, exporter_errors, metadata
from .fuse import fuse_for_inference
from .rundir import CONFIG, WEIGHTS, load_run, read_config, write_error, write_json
from .runtime import autocast, channels_last_default, resolve_device
from .text import first_line

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"
# The engines ``auto`` tries in each precision, fastest first, as benchmarks/inference.py measured them.
AUTO_ORDER = {"bf16": ("openvino", "torch"), "fp32": ("onnxruntime", "openvino", "torch")}
TOLERANCES = {"fp32": TOLERANCE, "bf16": 0.05}  # max |logits - fp32 eager| / max |fp32 eager|
MISSING = "--backend {backend} needs the infer extra: pip install 'cnnlab[infer]'"
CACHE_DIR = "inference"
CPU = torch.device("cpu")
# What each engine imports: the exporter's modules (export.py checks every file with onnxruntime) and its own.
EXPORTER = ("onnx", "onnxscript", "onnxruntime")
MODULES = {"onnxruntime": EXPORTER, "openvino": (*EXPORTER, "openvino")}


@dataclass(frozen=True)
class Engine:
    """A model ready to infer: ``engine(x)`` returns float32 logits on the CPU or ``device``."""

    backend: str
    precision: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    model: nn.Module  # the fused PyTorch model: its data_config, and the reference of the checks
    device: torch.device
    note: str | None = None  # why ``auto`` chose less than it could, if it did

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def installed(backend: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in MODULES.get(backend, ()))


def resolve(backend: str, precision: str, device: torch.device, model: nn.Module) -> str:
    """The engine that ``backend`` ("auto" or a name) comes to for ``model`` in ``precision``."""
    if backend not in BACKENDS:
        raise CnnlabError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise CnnlabError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if backend == "auto":
        cpu = device.type == "cpu" and not getattr(model, "is_nonparametric", False)
        return next(b for b in AUTO_ORDER[precision] if b == "torch" or (cpu and installed(b)))
    if backend != "torch":
        if device.type != "cpu":
            raise CnnlabError(f"--backend {backend} runs on the CPU; use --device cpu or --backend torch")
        if not installed(backend):
            raise CnnlabError(MISSING.format(backend=backend))
        if backend not in AUTO_ORDER[precision]:
            raise CnnlabError(
                f"{backend} runs fp32 only on the CPU; for bf16 use --backend openvino or torch"
            )
    return backend


def torch_engine(fused: nn.Module, precision: str, device: torch.device) -> Callable[[torch.Tensor], Any]:
    dtype = torch.bfloat16 if precision == "bf16" else None
    memory_format = torch.channels_last if channels_last_default(device) else torch.contiguous_format

    @torch.inference_mode()
    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            return fused(x.contiguous(memory_format=memory_format)).float()

    return forward


def onnxruntime_engine(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as many as torch: `cnnlab bench` compares them
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {"images": x.float().contiguous().numpy()})[0])

    return forward


def openvino_engine(path: Path, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import openvino

    config = {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",  # one batch at a time, on all the threads
    }
    try:
        request = openvino.Core().compile_model(str(path), "CPU", config).create_infer_request()
    except RuntimeError as e:  # OpenVINO's one type for a graph it cannot convert or compile
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = next((line for line in lines if "failed for" in line), lines[-1] if lines else "")
        raise CnnlabError(f"openvino cannot run {path}: {reason[:200]}") from None

    def forward(x: torch.Tensor) -> torch.Tensor:
        # share_outputs=False (the default) copies the logits out before the next batch overwrites them.
        return torch.from_numpy(request.infer({0: x.float().contiguous().numpy()})[0])

    return forward


def make_engine(
    fused: nn.Module, backend: str, precision: str, device: torch.device, onnx: Callable[[], Path]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward of ``fused`` on ``backend`` (resolved); ``onnx`` gives its ONNX file when needed."""
    if backend == "torch":
        return torch_engine(fused, precision, device)
    if backend == "onnxruntime":
        return onnxruntime_engine(onnx())
    return openvino_engine(onnx(), precision)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_onnx(fused: nn.Module, out: Path, meta: dict[str, Any]) -> list[dict[str, float]]:
    """Export ``fused`` to ``out`` (whole or not at all) and check it as ``cnnlab export`` does; the
    checks. A model the exporter cannot handle raises CnnlabError."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        example = torch.zeros(2, *meta["input_size"])
        try:
            exported = export_onnx(fused, example, tmp, meta)
        except exporter_errors() as e:
            raise CnnlabError(f"{meta['model']} does not export to ONNX: {first_line(e)[:300]}") from None
        checks = compare_outputs(fused, exported, meta["input_size"])
        worst = max(c["max_rel_diff"] for c in checks)
        if worst > TOLERANCE:
            raise CnnlabError(
                f"the ONNX file of {meta['model']} differs from PyTorch by {worst:.2e} relative, "
                f"above {TOLERANCE:g}; use --backend torch"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return checks


def cached_onnx(run_dir: Path, fused: nn.Module, meta: dict[str, Any]) -> Path:
    """The run's ONNX file, exported and checked now unless one made from the same weights and config
    by the same torch is there (``model.onnx.json`` records what it was made from)."""
    out = run_dir / CACHE_DIR / "model.onnx"
    sidecar = out.with_name(out.name + ".json")
    key = {
        "weights_sha256": _digest(run_dir / WEIGHTS),
        "config_sha256": _digest(run_dir / CONFIG),
        "torch": torch.__version__,
    }
    try:
        recorded = json.loads(sidecar.read_text())
        if out.exists() and isinstance(recorded, dict) and recorded.get("made_from") == key:
            return out
    except (OSError, ValueError):  # no sidecar, or a damaged one: build again
        pass
    try:
        checks = build_onnx(fused, out, meta)
        write_json(sidecar, {"made_from": key, "checks": checks, "tolerance": TOLERANCE})
    except OSError as e:  # a read-only run directory, a full disk
        raise write_error(out, e) from e
    return out


def load_engine(
    run_dir: str | os.PathLike[str],
    backend: str = "auto",
    precision: str = DEFAULT_PRECISION,
    device: str = "auto",
) -> Engine:
    """A run's model on ``backend`` in ``precision`` (see the module docstring). Under ``auto``, an engine
    that cannot take the model (the exporter or the engine refuses it, the ONNX file cannot be written)
    hands it to the next installed one of ``AUTO_ORDER``, PyTorch last, and ``engine.note`` says why."""
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    model = load_run(run_dir, dev)
    fused = fuse_for_inference(model, channels_last=channels_last_default(dev))
    meta = metadata(model, read_config(run_dir))
    first = resolve(backend, precision, dev, model)
    order = AUTO_ORDER[precision]
    later = order[order.index(first) + 1 :] if backend == "auto" else ()
    candidates = [first, *(b for b in later if b == "torch" or installed(b))]
    notes: list[str] = []
    for candidate in candidates:
        try:
            forward = make_engine(fused, candidate, precision, dev, lambda: cached_onnx(run_dir, fused, meta))
        except CnnlabError as e:  # the exporter's, the check's, the disk's or the engine's: one line each
            if candidate == candidates[-1]:
                raise
            notes.append(first_line(e))
            continue
        note = f"running on {candidate}: " + "; ".join(notes) if notes else None
        return Engine(candidate, precision, forward, fused, dev if candidate == "torch" else CPU, note)
    raise AssertionError("unreachable: the last candidate returns or raises")
