"""The validation split, the weights kept on it, early stopping, and the test set evaluated once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cnnlab.data.augment import plan_epoch
from cnnlab.data.split import validation_split
from cnnlab.errors import CnnlabError
from cnnlab.train.config import TrainConfig
from cnnlab.train.selection import Selection, best_epoch


def test_the_split_takes_the_same_share_of_every_class():
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 3 + [3] * 1)[torch.randperm(34)]
    train, val = validation_split(labels, 0.2, seed=5)
    # round(0.2 n): 2 of 10, 4 of 20; at least one of 3; none of a class of one, which stays in training.
    assert [int((labels[val] == c).sum()) for c in range(4)] == [2, 4, 1, 0]
    assert sorted(torch.cat([train, val]).tolist()) == list(range(34))
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())


def test_the_split_is_a_function_of_the_seed():
    labels = torch.arange(200) % 10
    a, b, c = (validation_split(labels, 0.1, seed)[1] for seed in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_split_with_nothing_to_hold_out_is_refused():
    with pytest.raises(CnnlabError, match="holds out no image"):
        validation_split(torch.arange(5), 0.5, seed=0)  # five classes of one image


def test_an_epoch_over_a_subset_visits_it_and_keeps_each_samples_draws():
    subset = torch.tensor([1, 4, 5, 8, 9])
    whole, part = plan_epoch(10, 3, 2, 4, True), plan_epoch(10, 3, 2, 4, True, subset=subset)
    assert sorted(part.order.tolist()) == subset.tolist()
    assert torch.equal(whole.offsets, part.offsets) and torch.equal(whole.flips, part.flips)
    assert torch.equal(part.order, plan_epoch(10, 3, 2, 4, True, subset=subset).order)


def test_the_validation_images_are_gathered_a_batch_at_a_time_not_copied_up_front(tiny_digits):
    from cnnlab.data import load
    from cnnlab.data.augment import Normalize, centre_crop
    from cnnlab.evaluate import evaluate
    from cnnlab.models import create_model
    from cnnlab.train.loop import _validation_split

    data = load(str(tiny_digits))
    val_idx = validation_split(data.train_labels, 0.2, seed=1)[1]
    copy, cpu = data.train_images[val_idx], torch.device("cpu")
    model = create_model("simple_cnn", num_classes=data.num_classes, in_chans=data.in_chans).eval()
    normalize = Normalize(data.mean, data.std)
    for crop in (None, 20):
        _, (rows, labels) = _validation_split(TrainConfig(val_fraction=0.2, seed=1), data, crop)
        # The rows read the training images' own storage: nothing is gathered until a batch is asked for.
        assert rows.images.untyped_storage().data_ptr() == data.train_images.untyped_storage().data_ptr()
        expected = copy if crop is None else centre_crop(copy, crop)
        assert len(rows) == len(val_idx) == len(labels) == 60
        assert torch.equal(torch.cat([rows[i : i + 7] for i in range(0, len(rows), 7)]), expected)
        assert evaluate(model, rows, labels, normalize, cpu, batch_size=7) == evaluate(
            model, expected, labels, normalize, cpu, batch_size=7
        )
    # The control: a gathered copy has storage of its own, which the first check tells apart.
    assert copy.untyped_storage().data_ptr() != data.train_images.untyped_storage().data_ptr()


def _rows(accs: list[float]) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "val_acc": a, "val_loss": 1 - a} for i, a in enumerate(accs)]


def test_the_best_epoch_is_the_first_with_the_highest_accuracy_and_patience_counts_from_it():
    rows = _rows([0.5, 0.7, 0.7, 0.6])
    assert best_epoch(rows) == 2
    assert not Selection(patience=3).stops(rows)
    assert Selection(patience=2).stops(rows)  # epochs 3 and 4 brought nothing better
    assert not Selection().stops(rows)  # no patience: never
    kept = Selection(keep="best").describe(rows, epochs=6)
    assert kept == {"weights": "best", "epoch": 2, "chosen_on": "validation accuracy", "val_acc": 0.7,
                    "val_loss": pytest.approx(0.3), "stopped_early": True}  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keep": "best"}, "--keep best chooses by the validation set"),
        ({"patience": 2}, "--patience chooses by the validation set"),
        ({"val_fraction": 1.0}, "--val-fraction must be in (0, 1)"),
        ({"keep": "worst"}, "--keep must be one of last, best"),
    ],
)
def test_selection_without_validation_is_refused(settings, message):
    with pytest.raises(CnnlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**settings).check()


def _train(tiny_digits: Path, out: Path, **settings) -> dict:
    from cnnlab.train import fit

    config = TrainConfig(model="simple_cnn", data=str(tiny_digits), epochs=4, batch_size=30, precision="fp32",
                         val_fraction=0.2, seed=1, out=str(out), **settings)  # fmt: skip
    return fit(config, quiet=True)


def _metrics(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _accuracy(run: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    import cnnlab
    from cnnlab.data.augment import Normalize
    from cnnlab.evaluate import evaluate

    model, info = cnnlab.load_run(run), json.loads((run / "config.json").read_text())["data"]
    return evaluate(model, images, labels, Normalize(info["mean"], info["std"]), torch.device("cpu"))["top1"]


@pytest.mark.slow
def test_the_kept_weights_are_the_best_epochs_and_the_test_set_is_evaluated_once(tiny_digits, tmp_path):
    from cnnlab.data import load

    result = _train(tiny_digits, tmp_path / "best", keep="best", lr=0.2)
    rows = _metrics(tmp_path / "best")
    assert all("test_acc" not in r for r in rows)  # each epoch is measured on validation only
    best = best_epoch(rows)
    assert result["kept"]["epoch"] == best and result["kept"]["val_acc"] == rows[best - 1]["val_acc"]
    data = load(str(tiny_digits))
    val_idx = validation_split(data.train_labels, 0.2, seed=1)[1]
    val_images, val_labels = data.train_images[val_idx], data.train_labels[val_idx]
    assert (
        len(val_idx) == 60 == json.loads((tmp_path / "best" / "config.json").read_text())["data"]["val_size"]
    )
    # The saved weights are the best epoch's: their validation accuracy is that row's, exactly, and
    # their test accuracy is result.json's.
    assert _accuracy(tmp_path / "best", val_images, val_labels) == rows[best - 1]["val_acc"]
    assert _accuracy(tmp_path / "best", data.test_images, data.test_labels) == result["test_acc"]
    # The control: at this rate the best epoch is not the last, whose weights --keep last saves.
    assert best != len(rows)
    last = _train(tiny_digits, tmp_path / "last", keep="last", lr=0.2)
    assert last["kept"]["epoch"] == len(rows)
    assert _accuracy(tmp_path / "last", val_images, val_labels) == rows[-1]["val_acc"]


@pytest.mark.slow
def test_early_stopping_ends_the_run_after_patience_epochs_without_progress(tiny_digits, tmp_path):
    # A rate this small leaves the validation accuracy where it starts: epoch 1 stays the best.
    result = _train(tiny_digits, tmp_path / "run", lr=1e-9, patience=1)
    assert result["epochs"] == 2 and result["kept"]["stopped_early"] is True
    assert len(_metrics(tmp_path / "run")) == 2
    assert "stopped early" in (tmp_path / "run" / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        # The best epoch is not the last (checked), with the moving average kept and mixing on.
        {"keep": "best", "patience": 3, "lr": 0.2, "ema_decay": 0.9, "mixup": 0.4, "cutmix": 1.0},
        # Nothing improves after epoch 1, whose weights come back from the checkpoint: the run stops
        # after epoch 2, the one trained after resuming.
        {"keep": "best", "patience": 1, "lr": 1e-9},
    ],
    ids=["best-ema-mixed", "stops-early"],
)
def test_resume_keeps_choosing_as_the_uninterrupted_run(tiny_digits, tmp_path, monkeypatch, settings):
    from test_recipe import interrupted_at_epoch_2

    import cnnlab.train.loop as loop
    from cnnlab.rundir import load_weights
    from cnnlab.train import resume

    whole = _train(tiny_digits, tmp_path / "whole", **settings)
    assert whole["kept"]["epoch"] < whole["epochs"] or whole["kept"]["stopped_early"]
    real = loop._epoch
    monkeypatch.setattr(loop, "_epoch", interrupted_at_epoch_2(real))
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_digits, tmp_path / "cut", **settings)
    monkeypatch.setattr(loop, "_epoch", real)
    cut = resume(tmp_path / "cut", quiet=True)
    assert cut["kept"] == whole["kept"] and cut["test_acc"] == whole["test_acc"]
    assert cut["epochs"] == whole["epochs"] == (2 if settings["patience"] == 1 else 4)
    a = load_weights(tmp_path / "whole" / "model.safetensors")
    b = load_weights(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
