"""Data-parallel training under torchrun: the result of one process, from two."""

import gc
import json
import os
import signal
import subprocess
import sys
import time
import weakref

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel as DDP

from cnnlab.data.augment import batches, plan_epoch
from cnnlab.errors import CnnlabError
from cnnlab.train import TrainConfig, loop
from cnnlab.train.distributed import World, local_batch, teardown

# A small learning rate keeps the run in the regime where rounding differences stay rounding: at
# lr 0.1 one process with one thread and with two already differ by 20% after an epoch.
ARGS = [
    "--model",
    "resnet20",
    "--epochs",
    "1",
    "--image-size",
    "16",
    "--precision",
    "fp32",
    "--batch-size",
    "64",
]
ARGS += ["--lr", "0.001", "--sync-bn", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "cnnlab", "train"]


def state_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: list[str]) -> float:
    num = sum(((a[k].double() - b[k].double()) ** 2).sum() for k in keys)
    return (num / sum((a[k].double() ** 2).sum() for k in keys)).sqrt().item()


def test_the_global_batch_divides_among_the_processes():
    world = World(rank=1, size=2)
    assert local_batch(64, world) == 32
    with pytest.raises(CnnlabError, match="global batch"):
        local_batch(63, world)


def test_each_process_gathers_its_slice_of_the_global_batch_with_its_own_augmentation():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(16)
    plan = plan_epoch(16, seed=1, epoch=2, padding=2, hflip=True)
    whole = list(batches(images, labels, 8, plan, drop_last=True))
    parts = [list(batches(images, labels, 8, plan, drop_last=True, rank=r, ranks=2)) for r in (0, 1)]
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step][0], parts[1][step][0]]), x)
        assert torch.equal(torch.cat([parts[0][step][1], parts[1][step][1]]), y)
    assert parts[1][0][1].tolist() == plan.order[4:8].tolist()


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo group of this one process, and no automatic collection while it lives: what teardown frees
    is then what its own collection freed."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    gc.disable()
    try:
        yield World(rank=0, size=2)  # what the trainer would be told under torchrun
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()


def test_teardown_frees_a_ddp_wrapper_left_in_a_cycle_before_destroying_the_group(one_process_group):
    """A DDP wrapper that outlives the training in a reference cycle holds the gloo group; freed only at
    the interpreter's exit, it aborted a rank ("terminate called without an active exception") in about
    one run of ten. teardown frees it first."""
    cycle: dict[str, object] = {"ddp": DDP(torch.nn.Linear(2, 2))}
    cycle["self"] = cycle
    ddp = weakref.ref(cycle["ddp"])
    del cycle
    assert ddp() is not None  # control: only a collection frees it
    teardown(one_process_group)
    assert ddp() is None and not dist.is_initialized()


def test_a_training_that_fails_in_its_step_leaves_no_ddp_wrapper_behind(
    one_process_group, tmp_path, monkeypatch
):
    """An error raised inside the step has the wrapper in its traceback's frames (the epoch's ``model``);
    fit clears them, so that teardown frees the wrapper before it destroys the group."""
    made = []

    class Recorded(DDP):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    def diverge(*args):
        raise CnnlabError("training diverged")

    monkeypatch.setattr(loop, "DDP", Recorded)
    monkeypatch.setattr(loop, "setup", lambda device: (one_process_group, "cpu"))
    monkeypatch.setattr("cnnlab.train.epoch.classification_loss", diverge)
    with pytest.raises(CnnlabError, match="diverged") as failure:
        loop.fit(TrainConfig(model="simple_cnn", epochs=1, out=str(tmp_path / "run")), live=False, quiet=True)
    assert len(made) == 1 and failure.value.__traceback__ is not None
    assert made[0]() is None and not dist.is_initialized()


@pytest.mark.slow
def test_two_processes_with_sync_bn_end_with_the_weights_of_one(cli, tmp_path):
    one = subprocess.run([sys.executable, "-m", "cnnlab", "train", *ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=ENV)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*TORCHRUN, *ARGS, "--out", str(tmp_path / "two")], capture_output=True, text=True,
                         env=ENV, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("epoch 1/1") == 1  # only rank 0 logs
    a, b = (
        load_file(tmp_path / "one" / "model.safetensors"),
        load_file(tmp_path / "two" / "model.safetensors"),
    )
    assert a.keys() == b.keys()  # plain BatchNorm keys: a checkpoint of any world size loads in any other
    params = [k for k in a if "running" not in k and a[k].is_floating_point()]
    assert state_distance(a, b, params) < 1e-3
    stats = [k for k in a if "running" in k]
    assert state_distance(a, b, stats) < 1e-2
    assert cli("eval", str(tmp_path / "two"), "--backend", "torch").returncode == 0


@pytest.mark.slow
def test_a_dead_process_stops_the_others_and_the_run_resumes_in_one(cli, tmp_path):
    out = tmp_path / "run"
    # With a validation split and --keep best: every epoch's choice is broadcast from rank 0, and the best
    # weights of two processes are in the checkpoint that one process resumes.
    args = ["--model", "resnet20", "--image-size", "16", "--epochs", "3", "--val-fraction", "0.2",
            "--keep", "best", "--patience", "10", "--no-progress", "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(
        [*TORCHRUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(run.pid)], capture_output=True, text=True)
    os.kill(int(workers.stdout.split()[-1]), signal.SIGKILL)
    try:
        _, err = run.communicate(timeout=60)  # no hang: the survivor is stopped
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail("the surviving process hung")
    assert run.returncode != 0 and "SIGKILL" in err
    assert not (out / "result.json").exists()
    # The checkpoint of two processes resumes in one.
    proc = cli("train", "--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "resuming after epoch" in proc.stdout and (out / "result.json").exists()
    kept = json.loads((out / "result.json").read_text())["kept"]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert kept["weights"] == "best" and len(rows) == 4 and rows[0].split(",")[3] == "val_loss"
