"""What a run trains on, settled before anything is written: the dataset at the size the model
takes, the crops, the epochs, and what was decided for the user, said once."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .. import data as datasets
from ..data.base import Dataset
from ..errors import CnnlabError
from ..models import create_model, min_input_size, paper_recipe_of, recipe_of
from ..runtime import resolve_precision
from .config import CROP_FRACTION, RESIZED_MIN_SIDE, TrainConfig


def load_data(config: TrainConfig) -> tuple[Dataset, list[str], bool]:
    """The dataset as the model takes it: images smaller than its minimum side are resized up to it
    (an explicit --image-size wins), and flipped or not as --hflip says; a line for each change, and
    whether the images were resized up."""
    data = datasets.load(
        config.data,
        root=config.data_root,
        download=config.download,
        image_size=config.image_size,
        strict=config.strict,
        cache=True,
    )
    notes: list[str] = []
    resized_up = False
    if config.image_size is None:
        with torch.device("meta"):  # its minimum side only: no memory, no initialization
            probe = create_model(
                config.model, num_classes=data.num_classes, in_chans=data.in_chans, **config.model_kwargs
            )
        minimum = min_input_size(probe)
        recipe_side = recipe_of(config.model, paper=config.recipe == "paper").image_size  # type: ignore[arg-type]
        wanted = recipe_side or minimum
        if min(data.image_size) < wanted:
            side = -(-max(wanted, minimum) // 8) * 8  # a multiple of 8 keeps the strided stages' maps whole
            notes.append(
                f"{data.name}'s {'x'.join(map(str, data.image_size))} images are smaller than {config.model} "
                f"trains on ({wanted}x{wanted}): resized to {side}x{side} (--image-size chooses another side)"
            )
            if recipe_side:
                config.from_recipe.append("image_size")
            config.image_size = side  # recorded in config.json: a resumed run and `eval` resize alike
            data = datasets.resize(data, side)
            resized_up = True
    if config.hflip is not None:
        data = dataclasses.replace(data, hflip=config.hflip)
    return data, notes, resized_up


def resized_crop_side(
    config: TrainConfig, data: Dataset, model: nn.Module, resized: bool, notes: list[str]
) -> int | None:
    """The side of random resized crops, where the run takes them: ``--crop resized``, or ``auto`` on
    the images of a store, or of a folder kept at its own size, of at least RESIZED_MIN_SIDE pixels:
    images resized by the run (up to the model's size, or to --image-size) may have no detail to crop
    into. Never for k-NN or a model without translation invariance. ImageNet crops 224 from images
    resized to 256: the same 0.875 of the stored side, in multiples of 8."""
    side = min(data.image_size)
    kind = datasets.source_kind(config.data)
    if config.crop == "resized" and kind not in ("store", "folder"):
        raise CnnlabError(
            f"--crop resized takes crops of images larger than the model's input, and {config.data}'s are "
            "small: train on an image folder or a store (cnnlab data pack --size) instead"
        )
    own_size = not resized and (kind == "store" or config.image_size is None)
    auto = config.crop == "auto" and kind in ("store", "folder") and own_size and side >= RESIZED_MIN_SIDE
    if not (config.crop == "resized" or auto):
        return None
    if getattr(model, "is_nonparametric", False) or not getattr(model, "translation_invariant", True):
        if config.crop == "resized":
            notes.append(f"--crop resized does not apply to {config.model}: it trains on whole images")
        return None
    crop = min(side, max(min_input_size(model), int(CROP_FRACTION * side / 8 + 0.5) * 8))
    size = "x".join(map(str, data.image_size))
    notes.append(
        f"random resized crops of the {size} images at {crop}x{crop}, evaluated on the centre "
        f"{crop}x{crop} (--crop pad trains on padded crops at {size})"
    )
    return crop


def precision_notes(config: TrainConfig, device: torch.device, dtype: torch.dtype | None) -> list[str]:
    """Where ``auto`` keeps the model's family in fp32 on a CPU that computes bf16: said once."""
    if config.precision != "auto" or dtype is not None or resolve_precision("auto", device) is None:
        return []
    slower = "its depthwise convolutions trained slower in bf16 on the CPUs measured"
    return [f"{config.model} trains in fp32: {slower} (--precision bf16 chooses bf16)"]


def paper_notes(config: TrainConfig, data: Dataset) -> list[str]:
    """Where the paper's recipe meets other data than the paper's: said once, not refused."""
    paper = paper_recipe_of(config.model)  # type: ignore[arg-type]
    if paper is None or paper.data is None or paper.data == data.name:
        return []
    return [f"{config.model}'s paper recipe is the one for {paper.data}; this run trains on {data.name}"]


def plan_epochs(config: TrainConfig, steps_per_epoch: int, notes: list[str]) -> int:
    """--epochs, or the recipe's epochs raised so that a small dataset gets at least min_steps steps:
    an epoch count tuned on one dataset starves a smaller one of optimizer steps. A paper's recipe
    keeps the paper's epochs: reproducing it is the point."""
    if config.epochs is not None:
        return config.epochs
    if config.recipe == "paper":
        return recipe_of(config.model, paper=True).epochs  # type: ignore[arg-type]
    planned = recipe_of(config.model).epochs  # type: ignore[arg-type]
    epochs = max(planned, -(-config.min_steps // steps_per_epoch))
    if epochs > planned:
        notes.append(
            f"{epochs} epochs of {steps_per_epoch} steps, for at least {config.min_steps} optimizer steps "
            "on this small dataset (--epochs chooses)"
        )
    return epochs
