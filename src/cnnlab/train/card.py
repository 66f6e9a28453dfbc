"""A run directory's model card, README.md (after Mitchell et al. 2019, "Model Cards for Model
Reporting", cut to what a training run knows): the model and its paper, the data, the recipe, the
results with their spread, the machine, and how to load and use the weights."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from ..machine import machine
from ..models import family_description, paper_recipe_of
from ..models.registry import model_description
from ..runconfig import RunConfig
from ..rundir import atomic_write
from ..text import pct
from .config import TrainConfig

CARD = "README.md"
_SHOWN_CLASSES = 20
# The settings the recipe table leaves out: where the data lives and how the run was run, not how
# the model learned.
_NOT_RECIPE = (
    "model", "data", "data_root", "out", "from_recipe", "download", "device", "log", "log_every", "strict",
    "sync_bn",
)  # fmt: skip


def write_card(run_dir: Path, config: RunConfig, result: dict[str, Any]) -> None:
    sections = [
        _model(config, result),
        _data(config),
        _recipe(config),
        _results(config, result),
        _machine(config),
        _usage(run_dir, config),
    ]
    atomic_write(run_dir / CARD, ("\n\n".join(sections) + "\n").encode("utf-8"))


def _model(config: RunConfig, result: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(config.model_kwargs.items()))
    start = f"fine-tuned from `{result['init']['run']}`" if result.get("init") else "trained from scratch"
    return (
        f"# {config.model} on {config.data.name}\n\n"
        f"A cnnlab run: `{config.model}`{f' ({args})' if args else ''}, {config.params:,} parameters, "
        f"{start}, {config.num_classes} classes.\n\n"
        f"**Model.** {model_description(config.model)}\n\n"
        f"**Family.** {family_description(config.model)}"
    )


def _data(config: RunConfig) -> str:
    d = config.data
    names = ", ".join(d.classes[:_SHOWN_CLASSES]) + (" …" if len(d.classes) > _SHOWN_CLASSES else "")
    val = f", {d.val_size:,} held out for validation (stratified)" if d.val_size else ""
    return (
        f"## Data\n\n"
        f"- `{d.source}`: {d.train_size:,} training images{val}, {d.test_size:,} test images.\n"
        f"- Input {'x'.join(map(str, d.input_size))}; classes: {names}.\n"
        f"- Normalized with the training images' mean {_floats(d.mean)} and std {_floats(d.std)}; "
        f"horizontal flips {'on' if d.hflip else 'off'}."
    )


def _recipe(config: RunConfig) -> str:
    train = config.train
    from_recipe = set(train.get("from_recipe", []))
    defaults = dataclasses.asdict(TrainConfig())
    lines = ["## Recipe", "", "| setting | value | from |", "|---|---|---|"]
    for key, value in train.items():
        if key in _NOT_RECIPE or value in (None, {}, []):
            continue
        if key in from_recipe:
            origin = f"the model's {train.get('recipe', 'default')} recipe"
        else:  # a flag, a recipe file, or what the run settled from the data (epochs, padding)
            origin = "cnnlab's default" if defaults.get(key) == value else "this run"
        lines.append(f"| {key} | {value} | {origin} |")
    paper = paper_recipe_of(config.model) if train.get("recipe") == "paper" else None
    if paper is not None and paper.source:
        lines += ["", f"The paper's recipe: {paper.source}."]
    lines += ["", "`config.json` holds every setting; `cnnlab train --config config.json` repeats the run."]
    return "\n".join(lines)


def _results(config: RunConfig, result: dict[str, Any]) -> str:
    n, acc = config.data.test_size, result["test_acc"]
    # A test accuracy is a mean of n hits: its sampling spread, not a spread over seeds.
    spread = 100 * math.sqrt(acc * (1 - acc) / n) if n else math.nan
    kept = result.get("kept", {})
    which = (
        f"epoch {kept['epoch']}, the best validation accuracy ({pct(kept['val_acc'])})"
        if kept.get("weights") == "best"
        else f"the last epoch's ({kept.get('epoch', result['epochs'])})"
    )
    tested = (
        "evaluated once on the test set"
        if config.data.val_size
        else "the test set measured after every epoch (without a validation split, nothing was chosen on it)"
    )
    stopped = (
        " It stopped early: the validation accuracy had stopped improving."
        if kept.get("stopped_early")
        else ""
    )
    return (
        f"## Results\n\n"
        f"- Test top-1 {pct(acc)} ± {spread:.2f} (standard error over {n:,} test images), top-5 "
        f"{pct(result['test_top5'])}, loss {result['test_loss']:.4f}.\n"
        f"- Weights: {which}, {tested}.{stopped}\n"
        f"- {result['epochs']} epochs in {result['train_time_s']:.1f} s, {result['images_per_s']:,.0f} "
        f"images/s; seed {result['seed']}."
    )


def _machine(config: RunConfig) -> str:
    m = machine()
    gpu = f", {m['gpu']}" if m["gpu"] else ""
    return (
        f"## Machine\n\n{m['cpu']}, {m['cores']} cores{gpu}; trained on {config.device} in "
        f"{config.precision}; torch {config.torch}, Python {m['python']}."
    )


def _usage(run_dir: Path, config: RunConfig) -> str:
    return (
        "## Use\n\n"
        "```python\n"
        "import cnnlab\n"
        f'model = cnnlab.load_run("{run_dir}")  # in eval mode; model.data_config holds the normalization\n'
        "```\n\n"
        "```sh\n"
        f"cnnlab eval {run_dir}            # accuracy, confusion matrix, calibration\n"
        f"cnnlab predict {run_dir} IMAGE   # the top classes of an image\n"
        f"cnnlab export {run_dir}          # an ONNX file (cnnlab[export])\n"
        "```\n\n"
        f'With torch.hub, from a cnnlab checkout: `torch.hub.load(CHECKOUT, "{config.model}", '
        f'source="local", run="{run_dir}")`.'
    )


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
