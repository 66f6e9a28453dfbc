"""`cnnlab compare`: costs, measured speed and, trained, accuracy side by side."""

import json

import pytest

from cnnlab.analysis.compare import SPEED_BATCH_SIZE, compare
from cnnlab.analysis.summary import summarize
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models import num_params


@pytest.mark.slow
def test_compare_untrained_models_at_their_common_input(tmp_path):
    r = compare(["resnet20", "plain20", "se_resnet20"], out_dir=tmp_path)
    assert r["input"] == [3, 32, 32] and r["trained"] is False
    for row in r["models"]:
        s = summarize(row["model"], (3, 32, 32))
        assert row["params"] == num_params(row["model"]) == s["params"]
        assert row["macs"] == s["macs"] and row["receptive_field"] == s["receptive_field"]
        assert row["images_per_s"] > 0
    # Shortcuts of option A have no weights: the plain twin has the residual net's parameters.
    assert r["models"][0]["params"] == r["models"][1]["params"] < r["models"][2]["params"]
    assert json.loads((tmp_path / "compare.json").read_text())["models"] == r["models"]
    assert (tmp_path / "compare.png").is_file()


@pytest.mark.slow
def test_models_with_different_inputs_need_one_given(tmp_path):
    with pytest.raises(CnnlabError, match="resnet20 3x32x32, resnet18 3x224x224"):
        compare(["resnet20", "resnet18"], out_dir=tmp_path)
    r = compare(["resnet20", "resnet18"], (3, 64, 64), out_dir=tmp_path, num_classes=10)
    assert (
        r["input"] == [3, 64, 64] and r["models"][1]["macs"] == summarize("resnet18", (3, 64, 64), 10)["macs"]
    )


@pytest.mark.slow
def test_compare_trained_under_one_budget(tiny_digits, tmp_path):
    r = compare(
        ["linear", "simple_cnn"],
        train=True,
        data=str(tiny_digits),
        epochs=3,
        out_dir=tmp_path,
        quiet=True,
        batch_size=30,
    )
    assert r["input"] == [1, 28, 28] and r["num_classes"] == 10 and r["epochs"] == 3
    for row in r["models"]:
        result = json.loads((tmp_path / "runs" / row["model"] / "result.json").read_text())
        assert row["test_acc"] == result["test_acc"] > 0.1  # better than chance on 10 digits
        assert row["params"] == result["params"]


@pytest.mark.slow
def test_compare_trains_with_the_batch_size_asked_for(tiny_digits, tmp_path, capsys):
    """`--batch-size` is the training batch (it once set only the timing batch: training used 128)."""
    args = ["compare", "linear", "--train", "--data", str(tiny_digits), "--epochs", "1", "--batch-size", "30"]
    assert main([*args, "--no-progress", "--out", str(tmp_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    config = json.loads((tmp_path / "runs" / "linear" / "config.json").read_text())
    assert config["train"]["batch_size"] == 30
    assert r["batch_size"] == SPEED_BATCH_SIZE  # the speed column keeps its own, fixed batch


@pytest.mark.slow
def test_compare_from_the_command_line(cli, tmp_path):
    proc = cli("compare", "resnet20", "resnet18", "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--input" in proc.stderr
    proc = cli("compare", "resnet20", "resnett20", "--out", str(tmp_path))
    assert proc.returncode == 2 and "resnet20" in proc.stderr
    proc = cli("compare", "resnet20", "resnet32", "--json", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert [row["model"] for row in json.loads(proc.stdout)["models"]] == ["resnet20", "resnet32"]
