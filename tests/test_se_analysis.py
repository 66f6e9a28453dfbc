"""SE excitations of a trained model, per block and per class."""

import json

import pytest
import torch

from cnnlab.analysis.se import analyze_se
from cnnlab.errors import CnnlabError
from cnnlab.train import TrainConfig, fit


@pytest.fixture(scope="module")
def se_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "se"
    fit(TrainConfig(model="se_resnet20", epochs=1, out=str(out)), quiet=True)
    return out


@pytest.mark.slow
def test_every_se_block_is_measured_per_class(se_run, tmp_path):
    result = analyze_se(se_run, tmp_path)
    assert [b["block"] for b in result["blocks"]] == [f"layer{s}.{i}.se" for s in (1, 2, 3) for i in range(3)]
    for block in result["blocks"]:
        per_class = torch.tensor(block["per_class_mean"])
        assert per_class.shape == (10, block["channels"])
        assert ((per_class >= 0) & (per_class <= 1)).all()  # sigmoid gates (rounded to 4 places)
        assert 0 < block["mean"] < 1 and block["class_spread"] >= 0
        # The spread is the std across classes of each channel's mean gate, averaged over channels.
        assert block["class_spread"] == pytest.approx(per_class.std(0).mean().item(), abs=1e-3)
    assert json.loads((tmp_path / "se.json").read_text())["images"] == 1000
    assert (tmp_path / "se.png").is_file()


@pytest.mark.slow
def test_a_model_without_se_is_refused(trained_run, tmp_path):
    with pytest.raises(CnnlabError, match="no SE blocks"):
        analyze_se(trained_run, tmp_path)


@pytest.mark.slow
def test_analyze_se_from_the_command_line(cli, se_run, tmp_path):
    proc = cli("analyze", "se", str(se_run), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "layer3.2.se" in proc.stdout and (tmp_path / "se.png").is_file()
