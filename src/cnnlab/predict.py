"""Using a trained run: evaluate it on a dataset, or classify image files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from . import data as datasets
from .data.augment import Normalize
from .data.base import Dataset
from .data.folder import read_image
from .errors import CnnlabError, InputSizeError
from .evaluate import logits_of, metrics
from .failures import summarize, write_failures
from .infer import DEFAULT_PRECISION, load_engine
from .runconfig import DataInfo
from .rundir import read_config
from .text import name_some


def run_dataset(
    run_dir: str | os.PathLike[str], data: str | None = None, data_root: str | None = None
) -> Dataset:
    """The dataset a run was trained on (or ``data``), at the run's input size, checked to fit its model:
    its labels are the run's class indices (see `_dataset_for_run`)."""
    return _dataset_for_run(run_dir, data, data_root)[0]


def _dataset_for_run(
    run_dir: str | os.PathLike[str], data: str | None, data_root: str | None
) -> tuple[Dataset, str | None]:
    """`run_dataset`'s dataset, and a note when its labels were mapped to the run's classes by name."""
    config = read_config(run_dir)
    source = data if data is not None else config.data.source
    root = data_root if data_root is not None else config.train.get("data_root")
    size = config.data.input_size
    # The run's input side: a model trained with --image-size sees its data resized the same way.
    side = size[1] if size[1] == size[2] else None
    # A converted ImageNet run states its evaluation resize (256 before a 224 crop): image folders get it.
    resize_side = config.data.resize_size if side else None
    interpolation = config.data.interpolation
    if config.converted is None and config.data.resize_size is not None and side:
        # Trained on random resized crops: evaluated on the centre of the images it trained from, as
        # training evaluated it (a folder's are the ones it packed then, at the size it asked for).
        stored = datasets.load(
            source, root=root, download=False, image_size=config.train.get("image_size"), cache=True
        )
        dataset = datasets.centre_cropped(stored, side)
    else:  # a folder through the cache, as training reads it: one larger than the memory is mapped
        dataset = datasets.load(
            source,
            root=root,
            download=False,
            image_size=side,
            resize_side=resize_side,
            interpolation=interpolation,
            cache=True,
        )
    got = [dataset.in_chans, *dataset.image_size]
    if got != size:
        raise InputSizeError(
            f"the model of {run_dir} takes {'x'.join(map(str, size))} images, "
            f"{dataset.name} has {'x'.join(map(str, got))}"
        )
    if dataset.num_classes != config.num_classes:
        raise InputSizeError(
            f"the model of {run_dir} has {config.num_classes} classes, "
            f"{dataset.name} has {dataset.num_classes}"
        )
    if config.converted is not None or dataset.classes == config.data.classes:
        # A converted run's names are ImageNet's or placeholders, no dataset's folder names (n01440764
        # is "tench"): its classes go by position, as its library numbered them.
        return dataset, None
    return _relabelled(dataset, config.data.classes, run_dir)


def _relabelled(dataset: Dataset, classes: list[str], run_dir: str | os.PathLike[str]) -> tuple[Dataset, str]:
    """``dataset`` with its labels mapped by name to the indices of ``classes``, the run's; other
    names than the run's are refused, since an accuracy over mismatched labels means nothing."""
    theirs, ours = set(dataset.classes), set(classes)
    if theirs != ours:
        raise CnnlabError(
            f"{dataset.name} has other classes than the model of {run_dir}: "
            f"{name_some(sorted(theirs - ours))} (the run has {name_some(sorted(ours - theirs))})"
        )
    index = torch.tensor([classes.index(name) for name in dataset.classes])
    note = f"the classes of {dataset.name} are the run's in another order: labels matched by name"
    relabelled = dataclasses.replace(
        dataset,
        train_labels=index[dataset.train_labels],
        test_labels=index[dataset.test_labels],
        classes=list(classes),
    )
    return relabelled, note


def evaluate_run(
    run_dir: str | os.PathLike[str],
    data: str | None = None,
    data_root: str | None = None,
    device: str = "auto",
    backend: str = "auto",
    precision: str = DEFAULT_PRECISION,
    write_to: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Top-1, top-5 and loss of a run's model on the test split of its dataset, or of ``data``, on the
    inference engine ``backend`` in ``precision`` (see `cnnlab.infer`), and where it fails (``failures``:
    see `cnnlab.failures.summarize`). With ``write_to``, a directory, the result is written there as
    eval.json with the confusion matrix, the most confidently wrong images and the reliability diagram
    as PNGs (``files`` names them)."""
    dataset, note = _dataset_for_run(run_dir, data, data_root)
    if len(dataset.test_labels) == 0:
        raise CnnlabError(f"{dataset.name} has no test images to evaluate {run_dir} on")
    engine = load_engine(run_dir, backend, precision, device)
    cfg: DataInfo = engine.model.data_config  # type: ignore[attr-defined]
    normalize = Normalize(tuple(cfg.mean), tuple(cfg.std)).to(engine.device)
    logits = logits_of(engine, dataset.test_images, normalize, engine.device)
    scores = metrics(logits, dataset.test_labels)
    notes = [n for n in (note, engine.note) if n]
    result = {
        "model": read_config(run_dir).model,
        "dataset": dataset.name,
        "images": len(dataset.test_labels),
        "backend": engine.backend,
        "precision": engine.precision,
        "test_acc": scores["top1"],
        "test_top5": scores["top5"],
        "test_loss": scores["loss"],
        **({"note": "; ".join(notes)} if notes else {}),
        "failures": summarize(logits, dataset.test_labels, dataset.classes),
    }
    if write_to is not None:
        result["files"] = write_failures(write_to, result, dataset.test_images)
    return result


def load_image(
    path: str | os.PathLike[str], data_config: DataInfo, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """An image file as a run's model takes it: the (C, H, W) uint8 image, converted to the model's
    channels and resized (shorter side, then centre crop) to its input size as image folders are at
    training time, and that image normalized as a batch of one, (1, C, H, W) float on ``device``.
    A converted ImageNet run states its own evaluation resize (``resize_size``, e.g. 256 before a
    224 crop) and ``interpolation``.

    ``data_config`` is a loaded run's ``model.data_config``. An unreadable file raises DataError.
    """
    c, h, w = data_config.input_size
    image = read_image(Path(path), c, (h, w), data_config.resize_size, data_config.interpolation)
    normalize = Normalize(tuple(data_config.mean), tuple(data_config.std)).to(device)
    return image, normalize(image.unsqueeze(0).to(device))


PREDICT_BATCH = 64  # image files classified per forward pass


def predict_files(
    run_dir: str | os.PathLike[str],
    images: list[str],
    topk: int = 3,
    device: str = "auto",
    backend: str = "auto",
    precision: str = DEFAULT_PRECISION,
) -> list[dict[str, Any]]:
    """The ``topk`` most likely classes of each image file, with their probabilities, on the inference
    engine ``backend`` in ``precision`` (see `cnnlab.infer`).

    Each image is converted to the model's channels and resized (shorter side, then centre crop)
    to its input size, as image folders are at training time.
    """
    engine = load_engine(run_dir, backend, precision, device)
    cfg: DataInfo = engine.model.data_config  # type: ignore[attr-defined]
    k = max(1, min(topk, len(cfg.classes)))
    results = []
    for start in range(0, len(images), PREDICT_BATCH):
        paths = images[start : start + PREDICT_BATCH]
        x = torch.cat([load_image(path, cfg, engine.device)[1] for path in paths])
        top = engine(x).float().softmax(1).topk(k)
        for path, values, indices in zip(paths, top.values.tolist(), top.indices.tolist(), strict=True):
            guesses = [
                {"label": cfg.classes[i], "index": i, "prob": p} for p, i in zip(values, indices, strict=True)
            ]
            results.append({"image": str(path), "top": guesses})
    return results
