"""Residual networks as ensembles of paths (Veit et al. 2016): routing, lesions, the analysis."""

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from cnnlab import create_model
from cnnlab.analysis.paths import (
    analyze_paths,
    gradient_per_path_length,
    lesioned,
    path_length_distribution,
    single_path_backward,
)
from cnnlab.errors import CnnlabError
from cnnlab.experiments import degradation
from cnnlab.experiments.arms import make_setup
from cnnlab.models.resnet import BasicBlock, ResNet


def small_resnet(shortcut: str = "A") -> ResNet:
    torch.manual_seed(0)
    return ResNet(
        BasicBlock, [1, 1, 1], widths=(4, 8, 16), num_classes=3, in_chans=1, stem="cifar", shortcut=shortcut
    ).eval()


def test_path_lengths_are_binomial():
    assert path_length_distribution(3) == [1 / 8, 3 / 8, 3 / 8, 1 / 8]
    assert sum(path_length_distribution(27)) == pytest.approx(1)


def test_the_single_path_gradients_sum_to_the_whole_gradient():
    """The unraveled view is exact: the gradient is the sum of the gradients of the 2^n paths."""
    for shortcut in ("A", "B"):  # zero-padding and projection shortcuts
        model = small_resnet(shortcut).double()
        x, y = torch.randn(2, 1, 12, 12, dtype=torch.float64), torch.tensor([0, 2])
        with single_path_backward(model) as gradient:
            loss = F.cross_entropy(model(x), y)
            paths = [gradient(loss, list(route)) for route in itertools.product([False, True], repeat=3)]
        stem = model.relu(model.bn1(model.conv1(x)))  # the first block's input, by hand
        out = stem
        for stage in model.stages:
            out = stage(out)
        (whole,) = torch.autograd.grad(
            F.cross_entropy(model.fc(torch.flatten(model.avgpool(out), 1)), y), stem
        )
        torch.testing.assert_close(sum(paths), whole, rtol=1e-9, atol=1e-12)
        assert all(p.abs().sum() > 0 for p in paths)  # each of the 8 paths carries gradient
        assert "forward" not in vars(model.layer1[0])  # the blocks are themselves again


def test_a_plain_network_has_one_path():
    with pytest.raises(CnnlabError, match="plain network"):
        gradient_per_path_length(small_resnet("none"), [(torch.randn(2, 1, 12, 12), torch.tensor([0, 1]))])


def test_a_lesioned_block_is_its_shortcut_alone():
    model = small_resnet()
    x = torch.randn(2, 4, 12, 12).relu()
    block, down = model.layer1[0], model.layer2[0]
    with lesioned([block, down]):
        torch.testing.assert_close(block(x), x)  # identity shortcut: the input itself
        y = down(x)
        assert y.shape == (2, 8, 6, 6)  # option A: subsampled and zero-padded
        torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
        assert (y[:, 4:] == 0).all()
    assert not torch.equal(block(x), x)  # restored

    plain = small_resnet("none")  # the plain twin's downsampling block has no shortcut to keep
    with lesioned([plain.layer2[0]]):
        assert plain.layer2[0](x).shape == (2, 8, 6, 6)
        assert plain(torch.randn(1, 1, 12, 12)).shape == (1, 3)


@pytest.mark.slow
def test_gradient_per_path_length_counts_every_length():
    model = create_model("resnet20", num_classes=10, in_chans=1)
    batch = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))]
    r = gradient_per_path_length(model, batch, samples=2)
    assert r["blocks"] == 9 and len(r["magnitude"]) == 10 and all(m > 0 for m in r["magnitude"])
    assert r["paths"] == [math.comb(9, k) for k in range(10)]
    assert sum(r["total_share"]) == pytest.approx(1)
    shares = [m * c for m, c in zip(r["magnitude"], r["paths"], strict=True)]
    assert r["total_share"] == pytest.approx([s / sum(shares) for s in shares])


@pytest.fixture(scope="module")
def twins(tiny_digits, tmp_path_factory):
    """Residual and plain networks of depths 20 and 32, trained on the same few digits, one seed."""
    out = tmp_path_factory.mktemp("degradation")
    setup = make_setup(out, data=str(tiny_digits), seeds=[0], epochs=2, live=False, quiet=True)
    return out, degradation.run(setup, depths=[20, 32])


@pytest.mark.slow
def test_degradation_trains_every_twin_and_states_the_claim(twins):
    out, r = twins
    assert list(r["runs"]) == ["plain20", "resnet20", "plain32", "resnet32"]
    for name, run in r["runs"].items():
        assert [len(c) for c in run["curves"]["train_acc"]] == [2]
        assert (out / "runs" / name / "seed-0" / "result.json").is_file()
    error = {row["arm"]: row["train_error"] for row in r["arms"]}
    final = {name: 1 - run["curves"]["train_acc"][0][-1] for name, run in r["runs"].items()}
    assert {name: e["values"] for name, e in error.items()} == {name: [v] for name, v in final.items()}
    # One seed: every difference tells, so each half is supported or contradicted by the numbers.
    plain, residual = r["findings"]
    assert plain["verdict"] == ("supports" if final["plain32"] > final["plain20"] else "contradicts")
    assert residual["verdict"] == ("supports" if final["resnet32"] <= final["resnet20"] else "contradicts")
    assert json.loads((out / "degradation.json").read_text())["arms"] == r["arms"]
    assert (out / "degradation.png").stat().st_size > 10_000


def test_degradation_refuses_depths_without_twins():
    with pytest.raises(CnnlabError, match="depths: 20, 32, 44, 56, 110"):
        degradation.twin_names([20, 21])
    with pytest.raises(CnnlabError, match="two increasing"):
        degradation.twin_names([56, 20])


@pytest.mark.slow
def test_lesion_study_of_trained_twins(twins, tmp_path):
    out, _ = twins
    residual, plain = (str(out / "runs" / name / "seed-0") for name in ("resnet20", "plain20"))
    r = analyze_paths(residual, plain=plain, out_dir=tmp_path, samples=1, lesion_samples=2)
    les = r["lesion"]
    assert [s["block"] for s in les["single"]] == [f"layer{i}.{j}" for i in (1, 2, 3) for j in range(3)]
    assert [s["downsampling"] for s in les["single"]] == [False] * 3 + [True, False, False] * 2
    assert [row["k"] for row in les["random"]] == [1, 2, 3, 4]
    assert les["images"] == 100 and all(0 <= s["test_acc"] <= 1 for s in les["single"])
    assert len(r["plain"]["single"]) == 9 and r["plain"]["random"] == []
    # Deleting a block changes the prediction of at least some images.
    assert any(s["test_acc"] != les["baseline"] for s in les["single"])
    assert (tmp_path / "paths.json").is_file() and (tmp_path / "paths.png").is_file()


@pytest.mark.slow
def test_analyze_paths_from_the_command_line(cli, twins, tmp_path):
    out, _ = twins
    residual, plain = (str(out / "runs" / name / "seed-0") for name in ("resnet20", "plain20"))
    proc = cli("analyze", "paths", residual, "--plain", plain,
               "--samples", "1", "--lesion-samples", "1", "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "lesion study" in proc.stdout and "plain20" in proc.stdout
    proc = cli("analyze", "paths", "resnet20", "--samples", "1", "--out", str(tmp_path), "--json")
    r = json.loads(proc.stdout)
    assert r["trained"] is False and "lesion" not in r and r["paths"] == 2**9
    proc = cli("analyze", "paths", "vgg11", "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no residual blocks" in proc.stderr


@pytest.mark.slow
def test_experiment_degradation_from_the_command_line(cli, tmp_path):
    proc = cli("experiment", "degradation", "--depths", "20", "--out", str(tmp_path))
    assert proc.returncode == 2 and "two increasing" in proc.stderr and proc.stderr.count("\n") == 1
    assert cli("experiment", "degradation", "--help").returncode == 0
