"""Recipe files: `cnnlab train --config FILE` sets any setting, flags win, and a run's own config.json
trains the very same weights again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.train.config_file import read_config_file


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_json_give_the_same_settings(tmp_path):
    yaml_text = (
        "model: resnet20\nweight-decay: 1e-4\nlr: 1\nmilestones: [0.5, 0.75]\n"
        "model_kwargs: {dropout: 0.1}\nhflip: false\n"
    )
    expected = {"model": "resnet20", "weight_decay": 1e-4, "lr": 1.0, "milestones": [0.5, 0.75],
                "model_kwargs": {"dropout": 0.1}, "hflip": False}  # fmt: skip
    yaml_file = _write(tmp_path, "r.yaml", yaml_text)
    json_file = _write(tmp_path, "r.json", json.dumps({**expected, "lr": 1}))
    for path in (yaml_file, json_file):
        values = read_config_file(path)
        assert values == expected
        assert isinstance(values["lr"], float)  # a float setting written as 1 is read as 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weight_decy: 0.1\n", "unknown setting 'weight_decy'; did you mean 'weight_decay'?"),
        ("zzz: 1\n", "unknown setting 'zzz'; the keys are the flags of `cnnlab train`"),
        ("epochs: ten\n", "epochs must be a whole number or null, got 'ten'"),
        ("epochs: 2.5\n", "epochs must be a whole number or null"),
        ("lr: true\n", "lr must be a number or null"),
        ("milestones: [0.5, x]\n", "milestones must be a list of numbers"),
        ("lr: -0.1\n", "--lr must be in (0, inf), got -0.1"),
        ("lr: .nan\n", "--lr must be in (0, inf), got nan"),
        ("optimizer: adam\n", "--optimizer must be one of sgd, nesterov, adamw, rmsprop, got 'adam'"),
        ("model_kwargs: {1x: 2}\n", "model_kwargs has a key that is not a name"),
        (
            "model_kwargs: {k: {a: 1}}\n",
            "model_kwargs.k must be a number, text, true/false or a list of them",
        ),
        ("- lr\n- 0.1\n", "must hold a mapping of settings (key: value), got list"),
        ("lr: [\n", "is not valid YAML"),
        ("created: 2026-01-01\n", "unknown setting 'created'"),
        ("data: 2026-13-01\n", "is not valid YAML: month must be in 1..12"),
        ("lr: !!float abc\n", "is not valid YAML"),
        ("epochs: " + "1" * 5000 + "\n", "is not valid YAML"),
        ("milestones: [&a [0.5], *a]\n", "a recipe file takes no aliases"),
        ("device: cuda:7\n", "--device must be one of auto, cpu, cuda, got 'cuda:7'"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(CnnlabError) as e:
        read_config_file(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value) and "\n" not in str(e.value)


def test_unreadable_and_oversized_files_are_refused(tmp_path):
    with pytest.raises(CnnlabError, match="cannot read"):
        read_config_file(tmp_path / "missing.yaml")
    with pytest.raises(CnnlabError, match="cannot read"):
        read_config_file(tmp_path)
    with pytest.raises(CnnlabError, match="not a recipe file"):
        read_config_file(_write(tmp_path, "big.yaml", "#" * (2 << 20)))
    with pytest.raises(CnnlabError, match="not valid JSON"):
        read_config_file(_write(tmp_path, "deep.json", "[" * 100_000))
    (tmp_path / "latin.yaml").write_bytes(b"model: r\xe9snet\n")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        read_config_file(tmp_path / "latin.yaml")


def test_a_runs_config_json_gives_its_training_settings_without_its_own_directory(trained_run):
    values = read_config_file(trained_run / "config.json")
    train = json.loads((trained_run / "config.json").read_text())["train"]
    assert "out" not in values and "from_recipe" not in values
    assert values["epochs"] == train["epochs"] == 2 and values["lr"] == train["lr"]


def test_a_converted_runs_config_json_has_nothing_to_repeat(tmp_path):
    path = _write(tmp_path, "config.json", json.dumps({"format_version": 1, "train": {}}))
    with pytest.raises(CnnlabError, match="no training settings"):
        read_config_file(path)


def test_flags_win_over_the_file_and_the_file_over_the_defaults(tmp_path, monkeypatch):
    import cnnlab.train
    from cnnlab.cli import main

    seen = []
    monkeypatch.setattr(cnnlab.train, "fit", lambda config, live=None: seen.append(config))
    path = _write(tmp_path, "r.yaml", "model: linear\nlr: 0.3\nweight_decay: 0.01\nseed: 4\nprecision: fp32\n"
                  "model_kwargs: {dropout: 0.1, init: zeros}\ndownload: false\n")  # fmt: skip
    assert (
        main(["train", "--config", str(path), "--lr", "0.2", "--seed", "0", "--model-arg", "dropout=0.5"])
        == 0
    )
    (config,) = seen
    assert (config.model, config.lr, config.weight_decay, config.seed) == ("linear", 0.2, 0.01, 0)
    assert config.precision == "fp32" and config.download is False
    assert config.model_kwargs == {"dropout": 0.5, "init": "zeros"}  # per key, the flag's
    assert config.crop == "auto" and config.epochs is None  # neither given: TrainConfig's defaults


def test_a_bad_config_exits_2_in_one_line_and_writes_nothing(cli, tmp_path):
    path = _write(tmp_path, "r.yaml", "label_smothing: 0.1\n")
    proc = cli("train", "--config", str(path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "did you mean 'label_smoothing'?" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_runs_config_json_trains_the_same_weights_again(cli, tiny_digits, tmp_path):
    """Everything the first run was given or settled (epochs, rate, recipe, split, mixing, kept
    weights) is in its config.json; trained from it, the second run ends bit-identical in fp32."""
    from cnnlab.rundir import load_weights

    first = tmp_path / "first"
    proc = cli("train", "--model", "simple_cnn", "--data", str(tiny_digits), "--epochs", "3",
               "--batch-size", "30", "--precision", "fp32", "--seed", "2", "--val-fraction", "0.2",
               "--keep", "best", "--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.05",
               "--out", str(first), "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again"
    proc = cli("train", "--config", str(first / "config.json"), "--out", str(again), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    a, b = load_weights(first / "model.safetensors"), load_weights(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first_train = json.loads((first / "config.json").read_text())["train"]
    again_train = json.loads((again / "config.json").read_text())["train"]
    assert {k: v for k, v in again_train.items() if k not in ("out", "from_recipe")} == {
        k: v for k, v in first_train.items() if k not in ("out", "from_recipe")
    }
    # The control: another seed from the same file trains other weights.
    other = tmp_path / "other"
    proc = cli(
        "train", "--config", str(first / "config.json"), "--seed", "3", "--out", str(other), "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    c = load_weights(other / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)
