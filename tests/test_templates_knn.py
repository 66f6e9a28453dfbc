"""Two claims of the course as numbers: linear templates look like class means; k-NN pays per query
in proportion to what it stores."""

import json

import pytest
import torch

from cnnlab.analysis.knn import analyze_knn
from cnnlab.analysis.templates import analyze_templates, correlation_matrix
from cnnlab.errors import CnnlabError
from cnnlab.train import TrainConfig, fit


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "linear"
    fit(TrainConfig(model="linear", epochs=5, lr=0.01, out=str(out)), quiet=True)
    return out


def test_correlation_matrix_is_pearson():
    a, b = torch.randn(3, 2, 4, 4), torch.randn(2, 2, 4, 4)
    corr = correlation_matrix(a, b)
    for i in range(3):
        for j in range(2):
            expected = torch.corrcoef(torch.stack([a[i].flatten(), b[j].flatten()]))[0, 1]
            assert corr[i, j].item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.slow
def test_linear_templates_look_like_their_class_means(linear_run, tmp_path):
    result = analyze_templates(linear_run, tmp_path)
    own = list(result["correlation_with_own_mean"].values())
    assert len(own) == 10 and all(r > 0.15 for r in own)
    assert result["mean_correlation_own"] > result["mean_correlation_other"] + 0.2
    assert result["own_mean_is_best_match"] >= 0.9
    saved = json.loads((tmp_path / "templates.json").read_text())
    assert saved["mean_correlation_own"] == result["mean_correlation_own"]
    assert (tmp_path / "templates.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_templates_refuse_a_model_that_is_not_linear(trained_run, tmp_path):
    with pytest.raises(CnnlabError, match="not a linear classifier"):
        analyze_templates(trained_run, tmp_path)


def test_knn_study_measures_accuracy_per_k_and_time_per_stored_set(tmp_path):
    result = analyze_knn("mnist5k", tmp_path, ks=(1, 3), sizes=(400, 2000), repeats=1)
    assert set(result["accuracy"]) == {"l2", "cosine"}
    assert all(0.85 < acc < 1.0 for m in result["accuracy"].values() for acc in m.values())
    assert result["timing"]["stored"] == [400, 2000]  # stratified subsets of exactly those sizes
    assert len(result["timing"]["seconds"]) == 2 and set(result["fit"]) == {
        "slope_s_per_stored_sample",
        "intercept_s",
        "r2",
    }
    assert json.loads((tmp_path / "knn.json").read_text())["best"] == result["best"]
    assert (tmp_path / "knn.png").is_file()


@pytest.mark.slow
def test_analyze_templates_and_knn_from_the_command_line(cli, linear_run, trained_run, tmp_path):
    proc = cli("analyze", "templates", str(linear_run), "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mean_correlation_own"] > 0.15
    assert (tmp_path / "templates.png").is_file()
    proc = cli("analyze", "templates", str(trained_run), "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a linear classifier" in proc.stderr
    proc = cli("analyze", "knn", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "R^2" in proc.stdout and (tmp_path / "knn.json").is_file()
