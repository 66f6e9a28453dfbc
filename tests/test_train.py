"""A real short training: the loss falls, the run directory is complete and loads back."""

import csv
import dataclasses
import itertools
import json

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.errors import CnnlabError, InputSizeError, RunDirError, UnknownNameError
from cnnlab.models import recipe_of
from cnnlab.rundir import RESULT_KEYS, load_checkpoint, save_checkpoint
from cnnlab.train import TrainConfig, fit
from cnnlab.train.config import apply_recipe
from cnnlab.train.schedule import SCHEDULES, make_optimizer


@pytest.mark.slow
def test_loss_falls_and_the_model_learns(trained_run):
    with (trained_run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[1]["train_acc"]) > 0.5  # ten classes: chance is 0.1


@pytest.mark.slow
def test_run_directory_holds_the_contract(trained_run):
    for name in (
        "config.json",
        "metrics.csv",
        "result.json",
        "model.safetensors",
        "checkpoint.pt",
        "curves.png",
    ):
        assert (trained_run / name).is_file(), name
    result = json.loads((trained_run / "result.json").read_text())
    assert set(RESULT_KEYS) <= set(result)
    assert result["model"] == "resnet20" and result["dataset"] == "mnist5k" and result["epochs"] == 2
    assert 0.0 <= result["test_acc"] <= result["test_top5"] <= 1.0
    assert result["params"] == 269_434  # ResNet-20 with 1 input channel, 10 classes
    assert (trained_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(trained_run.glob(".*tmp"))  # no temporary file left behind


@pytest.mark.slow
def test_load_run_returns_the_trained_weights(trained_run):
    model = cnnlab.load_run(trained_run)
    saved = load_file(trained_run / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert not model.training
    assert model.data_config.input_size == [1, 28, 28] and len(model.data_config.classes) == 10


@pytest.mark.slow
def test_checkpoint_loads_without_pickle_code_and_matches_weights(trained_run):
    ckpt = load_checkpoint(trained_run / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["metrics"]) == 2
    saved = load_file(trained_run / "model.safetensors")
    assert all(torch.equal(ckpt["model"][k], v) for k, v in saved.items())


def test_checkpoint_round_trips(tmp_path):
    state = {"epoch": 3, "w": torch.randn(4, 4), "rng": torch.get_rng_state()}
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    back = load_checkpoint(tmp_path / "checkpoint.pt")
    assert back["epoch"] == 3 and torch.equal(back["w"], state["w"])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.slow
def test_load_run_rejects_a_run_from_another_version(trained_run, tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    config = json.loads((trained_run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "format_version": 0}))
    with pytest.raises(RunDirError, match="another version"):
        cnnlab.load_run(run)
    with pytest.raises(RunDirError, match="not a cnnlab run directory"):
        cnnlab.load_run(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"model": "resnet2"}, UnknownNameError),
        ({"data": "no/such/folder"}, UnknownNameError),
        ({"model": "resnet18", "image_size": 16}, InputSizeError),  # below its 32x32 minimum, as asked
        ({"epochs": 0}, CnnlabError),
        ({"lr": -1.0}, CnnlabError),
        ({"precision": "int4"}, CnnlabError),
    ],
)
def test_bad_input_fails_before_anything_is_written(tmp_path, overrides, error):
    out = tmp_path / "run"
    with pytest.raises(error):
        fit(TrainConfig(out=str(out), **overrides), quiet=True)
    assert not out.exists()


def test_existing_run_directory_is_not_overwritten(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(CnnlabError, match="already exists"):
        fit(TrainConfig(out=str(tmp_path)), quiet=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_warm_up_peak_and_decay(schedule):
    settings = dataclasses.replace(
        apply_recipe(TrainConfig(model="resnet20")), schedule=schedule, decay_every=1.0, gamma=0.1
    )
    optimizer, scheduler = make_optimizer(torch.nn.Linear(1, 1), settings, 100, 10, steps_per_epoch=10)
    values = []
    for _ in range(100):
        values.append(optimizer.param_groups[0]["lr"] / settings.lr)
        optimizer.step()
        scheduler.step()
    assert max(values) == pytest.approx(1.0)
    assert values[0] < 0.5 and values[-1] < 0.05
    peak = values.index(max(values))
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(values[: peak + 1]))
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(values[peak:]))


@pytest.mark.parametrize(
    ("images", "epochs", "said"),
    [(4000, 12, False), (1400, 36, True), (300, 180, True)],  # 31, 10 and 2 steps an epoch at batch 128
)
def test_a_small_dataset_gets_the_minimum_number_of_steps(images, epochs, said):
    from cnnlab.train.inputs import plan_epochs as _epochs

    notes: list[str] = []
    steps_per_epoch = max(1, images // 128)
    assert (
        _epochs(apply_recipe(TrainConfig(model="resnet20")), steps_per_epoch, notes) == epochs
    )  # recipe: 12
    assert epochs * steps_per_epoch >= recipe_of("resnet20").min_steps
    assert bool(notes) == said
    assert _epochs(TrainConfig(model="resnet20", epochs=3), steps_per_epoch, []) == 3  # --epochs wins


@pytest.mark.slow
@pytest.mark.parametrize("hflip", [None, False, True])
def test_hflip_reaches_the_plan_and_config_json(tiny_digits, tmp_path, monkeypatch, hflip):
    import cnnlab.train.loop as loop

    asked = []
    real = loop.plan_epoch
    monkeypatch.setattr(loop, "plan_epoch", lambda *a, **k: asked.append(a[4]) or real(*a, **k))
    out = tmp_path / "run"
    fit(TrainConfig(model="linear", data=str(tiny_digits), epochs=1, hflip=hflip, out=str(out)), quiet=True)
    config = json.loads((out / "config.json").read_text())
    expected = True if hflip is None else hflip  # an image folder's own default: flips keep labels
    assert asked == [expected] and config["data"]["hflip"] is expected and config["train"]["hflip"] == hflip


def test_no_hflip_leaves_every_image_unflipped():
    from cnnlab.data.augment import plan_epoch

    assert not plan_epoch(1000, 0, 1, 4, hflip=False).flips.any()
    assert plan_epoch(1000, 0, 1, 4, hflip=True).flips.any()  # the control: flips do happen


@pytest.mark.slow
def test_images_below_the_model_minimum_are_resized_with_one_line(tiny_digits, tmp_path, capsys):
    from cnnlab.cli import main
    from cnnlab.predict import evaluate_run

    out = tmp_path / "run"
    # A 64-wide classifier: the resizing is the subject, and the paper's 4096-wide one takes most of the time.
    code = main(["train", "--model", "vgg11_bn", "--model-arg", "hidden=64", "--data", str(tiny_digits),
                 "--epochs", "1", "--no-progress", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "28x28 images are smaller than vgg11_bn trains on (32x32): resized to 32x32" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["input_size"] == [1, 32, 32] and config["train"]["image_size"] == 32
    # eval resizes the test set alike (on torch: a VGG's ONNX export would take longer than the training)
    assert evaluate_run(out, device="cpu", backend="torch")["images"] == 100


@pytest.mark.slow
@pytest.mark.parametrize(("model", "bf16_cpu", "precision"), [
    ("efficientnet_b0", True, "fp32"), ("resnet20", True, "bf16"), ("efficientnet_b0", False, "fp32"),
])  # fmt: skip
def test_auto_precision_keeps_efficientnet_in_fp32_on_a_cpu_with_bf16(
    tiny_digits, tmp_path, capsys, monkeypatch, model, bf16_cpu, precision
):
    """EfficientNet's depthwise convolutions train slower in bf16 on the CPU (benchmarks/README.md):
    `auto` keeps its family in fp32 there and says so once; the other families take bf16."""
    from cnnlab.cli import main

    monkeypatch.setattr("cnnlab.runtime.cpu_has_bf16", lambda: bf16_cpu)
    width = ["--model-arg", "width_mult=0.25"] if model == "efficientnet_b0" else []
    code = main(["train", "--model", model, *width, "--data", str(tiny_digits), "--epochs", "1",
                 "--batch-size", "100", "--no-progress", "--out", str(tmp_path / "run")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["precision"] == precision
    said = f"{model} trains in fp32: its depthwise convolutions trained slower in bf16"
    assert printed.count(said) == (model == "efficientnet_b0" and bf16_cpu)
    # --precision bf16 still chooses bf16 for it
    assert cnnlab.runtime.resolve_precision("bf16", torch.device("cpu"), "efficientnet") == torch.bfloat16
