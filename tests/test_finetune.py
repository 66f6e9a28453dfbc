"""Fine-tuning (``cnnlab train --init RUN``): what is copied, what is new, what is summed, what is refused."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import save_run
from safetensors.torch import load_file

import cnnlab
from cnnlab import rundir
from cnnlab.cli import main
from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.models import create_model
from cnnlab.train import TrainConfig, fit, init_from_run, resume

HEAD = ["fc3.weight", "fc3.bias"]  # simple_cnn's; the code finds them by shape, the tests name them


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """simple_cnn trained for three epochs on mnist5k (10 classes, 1 channel): a few seconds."""
    out = tmp_path_factory.mktemp("finetune") / "base"
    fit(TrainConfig(model="simple_cnn", epochs=3, precision="fp32", out=str(out)), quiet=True)
    return out


@pytest.fixture(scope="module")
def digits3(tiny_digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder of three digit classes (30 training and 10 test images each)."""
    root = tmp_path_factory.mktemp("digits3")
    for split in ("train", "test"):
        for c in ("3", "5", "8"):
            shutil.copytree(tiny_digits / split / c, root / split / c)
    return root


@pytest.mark.slow
def test_every_tensor_but_the_head_comes_from_the_run(base_run):
    torch.manual_seed(1)
    model = create_model("simple_cnn", num_classes=3, in_chans=1)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    info = init_from_run(model, base_run)
    saved = load_file(base_run / rundir.WEIGHTS)
    state = model.state_dict()
    assert info["new"] == HEAD and info["summed"] == [] and info["from_run"] == len(state) - 2
    assert state["fc3.weight"].shape == (3, 84)
    for key, value in state.items():
        if key in HEAD:  # the fresh initialisation, not the run's first three rows
            assert torch.equal(value, fresh[key]) and not torch.equal(value, saved[key][:3]), key
        else:
            assert torch.equal(value, saved[key]), key


@pytest.mark.slow
def test_the_same_class_count_copies_the_head_too(base_run):
    model = create_model("simple_cnn", num_classes=10, in_chans=1)
    info = init_from_run(model, base_run)
    saved = load_file(base_run / rundir.WEIGHTS)
    assert info["new"] == [] and info["from_run"] == len(saved)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_googlenet_auxiliary_heads_are_new_too(tmp_path):
    torch.manual_seed(0)
    googlenet = create_model("googlenet", num_classes=4, in_chans=1)
    run = save_run(googlenet, tmp_path / "g", "googlenet", list("abcd"), [1, 28, 28])
    info = init_from_run(create_model("googlenet", num_classes=2, in_chans=1), run)
    heads = ("aux1.fc2", "aux2.fc2", "fc")
    assert sorted(info["new"]) == sorted(f"{h}.{p}" for h in heads for p in ("weight", "bias"))


@pytest.mark.parametrize("name", ["simple_cnn", "resnet20"])
def test_a_gray_model_from_a_colour_run_computes_the_same_on_gray_images(tmp_path, name):
    torch.manual_seed(0)
    colour = create_model(name, num_classes=10, in_chans=3)
    for m in colour.modules():  # BatchNorm statistics other than (0, 1), so that they are tested too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    run = save_run(colour, tmp_path / "rgb", name, list("0123456789"), [3, 28, 28])
    gray = create_model(name, num_classes=10, in_chans=1)
    info = init_from_run(gray, run)
    stem = "conv1.weight"
    assert info["summed"] == [stem] and info["new"] == []
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        colour.eval(), gray.eval()
        assert torch.allclose(gray.conv1(x), colour.conv1(x.repeat(1, 3, 1, 1)), atol=1e-5)
        assert torch.allclose(gray(x), colour(x.repeat(1, 3, 1, 1)), atol=1e-4)


@pytest.mark.slow
def test_other_channel_changes_are_refused(base_run):
    model = create_model("simple_cnn", num_classes=10, in_chans=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CnnlabError, match="1-channel images and the data has 3") as e:
        init_from_run(model, base_run)
    assert "\n" not in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_a_run_of_other_shapes_is_refused_naming_tensors_and_nothing_is_loaded(base_run):
    kwargs = {"widths": (8, 16)}
    model = create_model("simple_cnn", num_classes=3, in_chans=1, **kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CnnlabError, match=r"of another shape: conv1\.weight .*nothing was loaded") as e:
        init_from_run(model, base_run, model_kwargs=kwargs)
    assert "\n" not in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_knn_and_a_missing_run_are_refused(base_run, tmp_path):
    with pytest.raises(CnnlabError, match="no weights to start from"):
        init_from_run(create_model("knn", num_classes=3, in_chans=1), base_run)
    with pytest.raises(RunDirError, match="does not exist"):
        init_from_run(create_model("simple_cnn", num_classes=3, in_chans=1), tmp_path / "nothing")


@pytest.mark.slow
def test_fine_tuning_learns_and_the_run_records_its_init(base_run, digits3, tmp_path, capsys):
    recipe = ["--data", str(digits3), "--epochs", "8", "--batch-size", "30", "--lr", "0.05"]
    recipe += ["--warmup-epochs", "0", "--precision", "fp32", "--no-progress"]
    out = tmp_path / "tuned"
    assert main(["train", "--init", str(base_run), *recipe, "--out", str(out)]) == 0  # no --model: the run's
    assert (
        f"init: 8 tensors from {base_run.resolve()}, 2 new (fc3.weight, fc3.bias)" in capsys.readouterr().out
    )

    config = json.loads((out / rundir.CONFIG).read_text())
    assert config["model"] == "simple_cnn" and config["train"]["init"] == str(base_run.resolve())
    result = json.loads((out / rundir.RESULT).read_text())
    assert result["init"]["new"] == HEAD and result["init"]["from_run"] == 8
    model = cnnlab.load_run(out)
    assert model.fc3.weight.shape == (3, 84)
    rows = rundir.read_metrics(out / rundir.METRICS)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result["test_acc"] > 0.6  # three classes: chance is 1/3
    # The copied features are what helps: the same recipe from scratch has not learnt as much yet.
    scratch = tmp_path / "scratch"
    assert main(["train", "--model", "simple_cnn", *recipe, "--out", str(scratch)]) == 0
    assert result["test_loss"] < json.loads((scratch / rundir.RESULT).read_text())["test_loss"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet20"], "holds a simple_cnn and cannot start a resnet20"),
        (["--resume", "RUN"], "--init starts a new run and --resume continues one"),
    ],
)
def test_cli_refuses_in_one_line(base_run, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    args = [str(base_run) if a == "RUN" else a for a in args]
    assert main(["train", "--init", str(base_run), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_refuses_a_missing_init_run_in_one_line(tmp_path, capsys):
    assert main(["train", "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1


@pytest.mark.slow
def test_without_init_the_default_model_is_unchanged(base_run, monkeypatch):
    seen: list[TrainConfig] = []
    monkeypatch.setattr("cnnlab.train.loop._fit", lambda config, *args: seen.append(config))
    main(["train"])
    main(["train", "--init", str(base_run)])
    main(["train", "--model", "vgg11"])
    assert [c.model for c in seen] == ["resnet20", "simple_cnn", "vgg11"]
    assert [c.init for c in seen] == [None, str(base_run), None]


@pytest.mark.slow
def test_a_fine_tuning_resumes_without_its_init_run(base_run, digits3, tmp_path):
    init, out = tmp_path / "init", tmp_path / "run"
    shutil.copytree(base_run, init)
    config = TrainConfig("simple_cnn", str(digits3), init=str(init), epochs=2, batch_size=30, out=str(out))
    fit(config, quiet=True)
    # As if killed after the last checkpoint, and the init run deleted since: the checkpoint suffices.
    (out / rundir.RESULT).unlink()
    (out / rundir.WEIGHTS).unlink()
    shutil.rmtree(init)
    result = resume(out, quiet=True)
    assert result["init"]["new"] == HEAD and cnnlab.load_run(out).fc3.weight.shape == (3, 84)
