"""A loss that stops being finite ends the run in one line, and the last good checkpoint stays."""

import math

import pytest

import cnnlab.train.epoch as epoch
from cnnlab.cli import main
from cnnlab.rundir import load_checkpoint


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(
    tiny_digits, tmp_path, monkeypatch, capsys
):
    real = epoch.classification_loss
    calls = {"n": 0}

    def diverging(outputs, y, label_smoothing, aux_weight, mixed):  # finite for the first epoch's 10 steps
        calls["n"] += 1
        loss, logits = real(outputs, y, label_smoothing, aux_weight, mixed)
        return (loss * math.inf if calls["n"] > 10 else loss), logits

    monkeypatch.setattr(epoch, "classification_loss", diverging)
    out = tmp_path / "run"
    code = main(["train", "--data", str(tiny_digits), "--batch-size", "30", "--epochs", "3", "--no-progress",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "diverged" in err and "epoch 2, step 1" in err and "--lr" in err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # the last good one
    assert not (out / "model.safetensors").exists()
