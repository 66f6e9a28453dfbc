"""Resume: a training killed at any moment continues and ends with the weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

ARGS = ["--model", "resnet20", "--epochs", "3", "--image-size", "16", "--precision", "fp32", "--seed", "3"]


# One thread each: the two trainings run side by side on two cores, and every run reduces in the same
# order, which bit-identical weights need.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(*args):
    cmd = [sys.executable, "-m", "cnnlab", "train", "--no-progress", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    killed = train(*ARGS, "--out", str(tmp_path / "killed"))
    whole = train(*ARGS, "--out", str(tmp_path / "whole"))
    # Wait for the first epoch's checkpoint, then kill it during the second epoch.
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "model.safetensors").exists()

    resumed = train("--resume", str(tmp_path / "killed"))
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert "resuming after epoch" in out
    assert whole.wait() == 0, whole.stderr.read()
    a, b = (
        load_file(tmp_path / "whole" / "model.safetensors"),
        load_file(tmp_path / "killed" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key  # bit-identical, not merely close
    # The metrics of every epoch are there once, as in the uninterrupted run.
    lines = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 4 and [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]


@pytest.mark.slow
def test_resume_refuses_a_finished_run_and_a_missing_one(cli, trained_run, tmp_path):
    proc = cli("train", "--resume", str(trained_run))
    assert proc.returncode == 2 and "finished" in proc.stderr and proc.stderr.count("\n") == 1
    proc = cli("train", "--resume", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_starts_over(cli, tiny_digits, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--data", str(tiny_digits), "--epochs", "1", "--out", str(out), "--no-progress")
    assert proc.returncode == 0
    for name in ("checkpoint.pt", "model.safetensors", "result.json", "metrics.csv", "curves.png"):
        (out / name).unlink()  # as if killed during the first epoch: only config.json is left
    proc = cli("train", "--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (out / "result.json").exists() and "resuming after" not in proc.stdout
