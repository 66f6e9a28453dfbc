"""The run directory: what a training leaves behind, and the one way back in (``load_run``).

    config.json        what was run: model, data (classes, mean, std, input size), the recipe
    metrics.csv        one row per epoch
    result.json        the final figures (a fixed contract, see RESULT_KEYS)
    model.safetensors  the trained weights, no pickle
    checkpoint.pt      model, optimizer, scheduler, scaler, generator and (with EMA) averaged-weight
                       states, to resume from
    curves.png         loss and accuracy per epoch

Every file is written to a temporary name, flushed to disk and renamed, so a kill or a full disk
mid-write leaves the previous version whole.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CnnlabError, RunDirError
from .plots import png_bytes, pyplot
from .runconfig import FORMAT_VERSION, RunConfig
from .text import first_line

CONFIG, METRICS, RESULT, WEIGHTS, CHECKPOINT, CURVES = (
    "config.json",
    "metrics.csv",
    "result.json",
    "model.safetensors",
    "checkpoint.pt",
    "curves.png",
)
RESULT_KEYS = (
    "model",
    "dataset",
    "epochs",
    "test_acc",
    "test_top5",
    "train_time_s",
    "images_per_s",
    "params",
)


def write_error(path: Path, error: Exception) -> RunDirError:
    """One line for a failed write; a full disk is named as such, since it is the usual cause."""
    # safetensors reports I/O errors as SafetensorError text ("... (os error 28) ..."), not OSError.
    full = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or re.search(
        rf"os error ({errno.ENOSPC}|{errno.EDQUOT})\b|No space left", str(error)
    )
    if full:
        return RunDirError(
            f"disk full while writing {path}; free some space and retry (the previous {path.name}, "
            "if any, is kept whole)"
        )
    why = getattr(error, "strerror", None) or first_line(error)
    return RunDirError(f"cannot write {path}: {why}; the previous {path.name}, if any, is kept whole")


def atomic_write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path.parent} is not a cnnlab run directory: {path.name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is not valid JSON ({e}); the run directory is damaged") from None
    except OSError as e:  # a folder in its place, no permission, an I/O error
        raise RunDirError(f"cannot read {path}: {e.strerror or e}") from None


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def read_metrics(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def save_weights(model: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        save_file(state, tmp, metadata={"format": "cnnlab", "version": str(FORMAT_VERSION)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, SafetensorError)):
            raise write_error(path, e) from e
        raise


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors`` (a format that runs no code); a damaged file: RunDirError."""
    try:
        return load_file(path)
    except FileNotFoundError:
        raise RunDirError(f"no weights file at {path}") from None
    except (SafetensorError, OSError) as e:
        raise RunDirError(
            f"cannot read weights {path}: {first_line(e)}; the file is damaged, retrain or resume"
        ) from None


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_tensors(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load`` that never runs code from the file (``weights_only=True``): a damaged file or a
    pickle that asks for code is a one-line RunDirError naming ``what`` it was meant to be."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"no {what} at {path}") from None
    except Exception as e:  # a damaged file or a pickle that asks for code: never half-loaded
        text = str(e)
        # torch's own message advises weights_only=False, exactly what must not be done with such a file.
        wanted = re.search(r"Unsupported (?:global|class):? (?:GLOBAL )?([\w.]+)", text)
        if wanted:
            raise RunDirError(
                f"refusing to load {what} {path}: it asks for {wanted.group(1)}, which a checkpoint "
                "never needs and which could run code; delete it unless you know who made it"
            ) from None
        if "Weights only load failed" in text:
            raise RunDirError(
                f"cannot load {what} {path}: it is not plain tensors and numbers; it is damaged or "
                "was not written by cnnlab"
            ) from None
        raise RunDirError(f"cannot load {what} {path}: {first_line(e)}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint without ever running code from it (``weights_only=True``)."""
    return load_tensors(path, "checkpoint")


def read_config(run_dir: str | os.PathLike[str]) -> RunConfig:
    run_dir = Path(run_dir)
    if not _exists(run_dir) or not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    return RunConfig.from_json(read_json(run_dir / CONFIG), str(run_dir / CONFIG))


def write_config(run_dir: Path, config: RunConfig) -> None:
    write_json(run_dir / CONFIG, config.to_json())


def load_run(run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a run, in eval mode.

    The model takes normalized float images; ``model.data_config`` (a ``runconfig.DataInfo``) holds
    what inference needs: ``input_size`` (C, H, W), ``mean``, ``std`` (0..1 scale) and ``classes``.
    """
    from .models import create_model

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        model = create_model(
            config.model, num_classes=config.num_classes, in_chans=config.in_chans, **config.model_kwargs
        )
    except (TypeError, ValueError) as e:  # model_kwargs of the wrong kind
        raise RunDirError(
            f"{run_dir / CONFIG} describes no model cnnlab can build: {' '.join(str(e).split())}"
        ) from None
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise RunDirError(f"{run_dir} has no {WEIGHTS}: the training did not finish; resume or retrain it")
    state = load_weights(weights)
    try:
        model.load_state_dict(state)
    except (RuntimeError, OSError) as e:
        raise RunDirError(f"{weights} does not fit {config.model}: {first_line(e)}") from None
    model.data_config = config.data  # type: ignore[assignment]
    return model.to(device).eval()


def held_out(row: dict[str, float]) -> str:
    """The set a row of metrics.csv evaluates each epoch: "val" with a validation split, else "test"."""
    return "val" if "val_acc" in row else "test"


def plot_curves(rows: list[dict[str, float]], path: Path, title: str) -> None:
    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    held = held_out(rows[0])
    label = {"val": "validation", "test": "test"}[held]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r[f"{held}_loss"] for r in rows], "s-", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss", yscale="log")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in rows], "o-", label="train")
    ax_acc.plot(epochs, [100 * r[f"{held}_acc"] for r in rows], "s-", label=label)
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    atomic_write(path, png_bytes(fig, dpi=110))


def _exists(path: Path) -> bool:
    """``path.exists()``, with a name the file system refuses (too long, say) as a RunDirError."""
    try:
        return path.exists()
    except OSError as e:
        raise RunDirError(f"cannot use {str(path)[:80]!r}: {e.strerror or first_line(e)}") from None


def make_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` (and its parents), or say in one line why it cannot be."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(run_dir, e) from e


def check_new_run_dir(run_dir: Path) -> None:
    if _exists(run_dir) and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise CnnlabError(f"{run_dir} already exists and is not empty; choose another --out")
