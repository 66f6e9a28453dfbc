"""`cnnlab train`: train a model and write a run directory (the only verb that imports the trainer)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from typing import Any

from ..errors import CnnlabError
from .common import TRAIN_SHARED


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """``["k=5", "metric=cosine"]`` -> ``{"k": 5, "metric": "cosine"}``: numbers, booleans and None
    are read as Python literals, anything else stays a string."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise CnnlabError(f"--model-arg takes KEY=VALUE, e.g. --model-arg k=5; got {item!r}")
        # Python's parser answers deep nesting ("-----...1", "[[[[...") with MemoryError or
        # RecursionError: that is text too, not an exhausted machine.
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            kwargs[key] = text
    return kwargs


def run(args: argparse.Namespace) -> None:
    from ..train import TrainConfig, fit, resume
    from ..train.config_file import read_config_file

    if args.resume and "init" in args:
        raise CnnlabError("--init starts a new run and --resume continues one: give one of them, not both")
    if args.resume and args.config:
        raise CnnlabError("--resume continues a run with its own settings: give it no --config")
    if args.resume:
        resume(args.resume, live=False if args.no_progress else None)
        return

    # Every flag of `train` is named after the TrainConfig field it sets, and only the flags given are
    # in ``args`` (see ``add``): a recipe file sets the rest, and the config's defaults what it leaves.
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    values = read_config_file(args.config) if args.config else {}
    model_kwargs = values.pop("model_kwargs", {}) | parse_model_args(args.model_arg)
    download = values.pop("download", True) and not args.no_download
    config = TrainConfig(**(values | given), download=download, model_kwargs=model_kwargs)
    fit(config, live=False if args.no_progress else None)  # prints its own progress and result


def show(result: Any, args: argparse.Namespace) -> None:  # never called: run prints as it trains
    pass


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-download",
        action="store_true",
        default=False,
        help="never download; fail if the data is missing",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on an unreadable image in an image folder instead of skipping it",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the model's builder, e.g. k=5 or metric=cosine for knn, dropout=0.2 (repeatable; "
        "wins over the recipe's)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help="resize every image to this side (default: images smaller than the model's recipe says are "
        "resized up to its size, or the model's minimum rounded up to a multiple of 8)",
    )
    p.add_argument(
        "--hflip",
        action=argparse.BooleanOptionalAction,
        help="random horizontal flips (default: where the dataset says a flip keeps the label: not for "
        "digits)",
    )


def _add_optimization_options(p: argparse.ArgumentParser) -> None:
    from ..runtime import PRECISIONS
    from ..train.config import CROPS, RESIZED_MIN_SIDE

    p.add_argument(
        "--epochs",
        type=int,
        help="default: the model's recipe, or more on a small dataset: see --min-steps",
    )
    p.add_argument(
        "--min-steps",
        type=int,
        help="without --epochs, at least this many optimizer steps (default: the model's recipe, see "
        "`cnnlab models NAME`)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="images per optimizer step (default 128, or the paper's batch with --recipe paper)",
    )
    p.add_argument(
        "--padding", type=int, help="random-crop padding in pixels (default: an eighth of the side)"
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        help=f"resized: random resized crops (ImageNet's), evaluated on the centre crop; pad: padded crops; "
        f"auto: resized on images of at least {RESIZED_MIN_SIDE} pixels (default)",
    )
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="default auto: bf16 where the hardware has it (EfficientNet on a CPU: fp32)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory layout (default: where it is faster, on CPU and CUDA)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun: BatchNorm statistics of the global batch, as one process computes them",
    )


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    """The settings a model's recipe gives when they are not: `cnnlab models NAME` shows its recipe."""
    from ..models.recipe import OPTIMIZERS
    from ..train.config import RECIPES
    from ..train.schedule import SCHEDULES

    recipe = "default: the model's recipe, see `cnnlab models NAME`"
    p.add_argument(
        "--recipe",
        choices=RECIPES,
        help="which of the model's recipes gives the settings below when not given: its default one, or "
        "its paper's (the paper's batch, epochs and schedule; docs/papers.md lists them)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=recipe)
    p.add_argument(
        "--lr", type=float, help=f"peak learning rate ({recipe}, scaled by batch size / the recipe's batch)"
    )
    p.add_argument("--momentum", type=float, help=f"SGD's and RMSprop's momentum, AdamW's beta1 ({recipe})")
    p.add_argument("--weight-decay", type=float, help=recipe)
    p.add_argument(
        "--decay-norm-and-bias",
        action=argparse.BooleanOptionalAction,
        help=f"weight decay on BatchNorm's scale and shift and on biases too ({recipe})",
    )
    p.add_argument("--schedule", choices=SCHEDULES, help=recipe)
    p.add_argument(
        "--milestones",
        type=float,
        nargs="+",
        metavar="FRACTION",
        help=f"--schedule step: multiply the rate by --gamma at these fractions of the run ({recipe})",
    )
    p.add_argument("--gamma", type=float, help=f"the factor of each step or exponential decay ({recipe})")
    p.add_argument(
        "--decay-every",
        type=float,
        metavar="EPOCHS",
        help=f"--schedule exponential: decay by --gamma every this many epochs after the warm-up ({recipe})",
    )
    p.add_argument("--warmup-epochs", type=float, help=recipe)
    p.add_argument(
        "--warmup-factor",
        type=float,
        help=f"hold this fraction of the rate during the warm-up instead of ramping up linearly ({recipe})",
    )
    p.add_argument("--label-smoothing", type=float, help=recipe)
    p.add_argument("--clip-grad-norm", type=float, help=f"clip the gradients' norm to this ({recipe})")
    p.add_argument(
        "--ema-decay",
        type=float,
        help="evaluate and save a moving average of the weights with this decay, e.g. 0.999, warmed up "
        f"over the first updates ({recipe})",
    )
    p.add_argument(
        "--aux-weight", type=float, help=f"each auxiliary classifier's share of the loss ({recipe})"
    )


def add(sub: Any) -> None:
    from ..train.config import DEFAULT_MODEL

    p = sub.add_parser(
        "train",
        parents=[TRAIN_SHARED],
        # A setting not given stays out of the parsed arguments, so that a --config file can set it.
        argument_default=argparse.SUPPRESS,
        help="train a model and write a run directory",
        description="Train a model; with no arguments, ResNet-20 on the embedded mnist5k digits.",
    )
    p.add_argument(  # default None: with --init, "not given" means the init run's model
        "--model",
        help=f"a registered model (default {DEFAULT_MODEL}, or the --init run's; see `cnnlab models`)",
    )
    _add_data_options(p)
    _add_optimization_options(p)
    _add_recipe_options(p)
    p.add_argument(
        "--init",
        metavar="RUN_DIR",
        help="start from the weights of RUN_DIR (a trained or converted run); layers whose shape depends "
        "on the number of classes get a new initialisation",
    )
    _add_selection_options(p)
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a recipe file, YAML or JSON, of these settings (keys as the flags, e.g. weight_decay: 5e-4); "
        "the flags given win; a run's config.json repeats that run",
    )
    p.add_argument("--no-progress", action="store_true", default=False, help="plain lines even on a terminal")
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint, with its own settings",
    )
    p.set_defaults(func=run, show=show)


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    """Validation, the weights kept, mixing and logging: all off by default."""
    from ..train.config import KEEPS
    from ..train.logger import LOGS

    p.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="hold this stratified share of the training set out for validation (a function of --seed); "
        "each epoch is evaluated on it, and the test set once, at the end",
    )
    p.add_argument(
        "--keep",
        choices=KEEPS,
        help="the weights saved and tested: the last epoch's (default), or the best on validation",
    )
    p.add_argument(
        "--patience",
        type=int,
        metavar="EPOCHS",
        help="stop after this many epochs without a better validation accuracy (needs --val-fraction)",
    )
    p.add_argument("--mixup", type=float, metavar="ALPHA", help="MixUp with Beta(ALPHA, ALPHA), e.g. 0.2")
    p.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(ALPHA, ALPHA), e.g. 1.0")
    p.add_argument(
        "--log",
        choices=LOGS,
        help="also write TensorBoard event files into RUN_DIR/tensorboard (needs cnnlab[tensorboard])",
    )
    p.add_argument(
        "--log-every", type=int, metavar="STEPS", help="optimizer steps between logged losses (default 50)"
    )
