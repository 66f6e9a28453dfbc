"""--log tensorboard: the loss and rate every N steps and each epoch's metrics in event files; without
the optional extra, one line naming it."""

from __future__ import annotations

import csv
import importlib.util

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.train.logger import check_available


@pytest.mark.slow
def test_the_event_files_hold_every_nth_step_and_each_epochs_metrics(tiny_digits, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnlab.train import TrainConfig, fit

    out = tmp_path / "run"
    config = TrainConfig(model="simple_cnn", data=str(tiny_digits), epochs=2, batch_size=30, precision="fp32",
                         log="tensorboard", log_every=3, out=str(out))  # fmt: skip
    fit(config, quiet=True)
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    # 300 images in batches of 30: 10 steps an epoch, so steps 3, 6, 9, then 13, 16, 19.
    losses = events.Scalars("step/train_loss")
    assert [e.step for e in losses] == [3, 6, 9, 13, 16, 19]
    rates = [e.value for e in events.Scalars("step/lr")]
    assert rates[0] < rates[1]  # warming up over the first epoch
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    accuracies = events.Scalars("epoch/test_acc")
    assert [e.step for e in accuracies] == [10, 20]
    for event, row in zip(accuracies, rows, strict=True):
        assert event.value == pytest.approx(float(row["test_acc"]), rel=1e-6)


def test_without_the_extra_the_run_stops_in_one_line(monkeypatch, tmp_path):
    from cnnlab.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    with pytest.raises(CnnlabError, match=r"pip install 'cnnlab\[tensorboard\]'"):
        check_available("tensorboard")
    check_available(None)  # nothing asked, nothing needed
    assert main(["train", "--log", "tensorboard", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert not (tmp_path / "run").exists()
