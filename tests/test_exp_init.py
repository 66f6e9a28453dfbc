"""`cnnlab experiment init`: signal scale at initialization and trainability under three initializations,
and the ResNet options it needs (no BatchNorm, the initialization)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.experiments import experiment
from cnnlab.experiments import init as init_experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread
from cnnlab.experiments.init import INITS, judge, ratios, signal, train_seeds
from cnnlab.models import create_model
from cnnlab.models.resnet import BasicBlock, ResNet

DEPTHS, TRAIN_DEPTHS = (20, 32), (20,)  # the quick run's: the shallowest twins, the same measurement


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("init")
    setup = make_setup(out, quick=True, live=False, quiet=True)
    return out, experiment("init").run(setup, depths=DEPTHS, train_depths=TRAIN_DEPTHS)


@pytest.mark.slow
def test_quick_run_writes_json_and_png(quick):
    out, _ = quick
    saved = json.loads((out / "init.json").read_text())
    assert saved["experiment"] == "init" and saved["verdict"] in VERDICTS
    assert len(saved["findings"]) == 7 and all(f["verdict"] in VERDICTS for f in saved["findings"])
    # Per depth and kind: three initializations without BatchNorm and He with it.
    assert len(saved["arms"]) == len(DEPTHS) * 2 * 4
    trained = [row for row in saved["arms"] if "trained" in row]
    assert sorted(row["arm"] for row in trained) == sorted(
        f"{m}20-{i}" for m in ("plain", "resnet") for i in INITS
    )
    assert all(row["trained"].startswith(("0/2", "1/2", "2/2")) for row in trained)
    assert set(saved["trained_per_seed"]) == set(INITS)
    run = saved["runs"]["resnet32-he"]
    assert len(run["per_seed"]) == 2 and len(run["per_seed"][0]["activation_std"]) == 1 + 15  # stem + blocks
    assert (out / "init.png").stat().st_size > 10_000
    assert (torch.tensor([1e-39]) * 0.5).item() > 0  # the run flushed subnormals to zero only while it ran


@pytest.mark.slow
def test_without_batchnorm_he_grows_the_residual_sum_and_normal_init_loses_the_plain_signal(quick):
    runs = quick[1]["runs"]
    assert runs["resnet32-he"]["activation_ratio"]["min"] > runs["resnet20-he"]["activation_ratio"]["max"] > 1
    assert runs["plain32-normal"]["activation_ratio"]["max"] < 1e-20
    assert runs["resnet32-he-bn"]["activation_ratio"]["max"] < runs["resnet32-he"]["activation_ratio"]["min"]


def identity_resnet(shortcut: str) -> ResNet:
    """One stage of two blocks, 2 channels, every conv the identity: a block maps a positive x to
    relu(x + x) = 2x with the shortcut, to x without it."""
    net = ResNet(
        BasicBlock, [2], widths=(2,), num_classes=3, in_chans=2, stem="cifar", shortcut=shortcut, norm="none"
    )
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.weight)
            m.weight.data[[0, 1], [0, 1], 1, 1] = 1.0
    return net


def test_signal_doubles_through_identity_residual_blocks_by_hand():
    torch.manual_seed(0)
    x, y = torch.rand(4, 2, 6, 6) + 0.1, torch.tensor([0, 1, 2, 0])
    net = identity_resnet("A")
    measured = signal(net, x, y)
    assert measured["activation_std"] == pytest.approx([x.std().item() * 2**k for k in range(3)], rel=1e-5)
    # The gradient at the last block's output: d CE / d logits, back through the FC and the mean over
    # the 36 positions; each block before it doubles it (every activation is positive).
    last = 4 * x
    p = F.softmax(net.fc(last.mean((2, 3))), 1).detach()
    per_image = (p - F.one_hot(y, 3)) / len(y) @ net.fc.weight.detach()
    at_last = (per_image.square().sum() * 36).sqrt().item() / 36
    assert measured["gradient_norm"] == pytest.approx([4 * at_last, 2 * at_last, at_last], rel=1e-5)
    assert ratios(measured) == pytest.approx((4.0, 4.0), rel=1e-5)
    plain = signal(identity_resnet("none"), x, y)  # negative control: without shortcuts nothing grows
    assert ratios(plain) == pytest.approx((1.0, 1.0), rel=1e-5)


def test_resnet_options_keep_the_default_and_change_what_they_say():
    torch.manual_seed(0)
    default = create_model("resnet20", num_classes=10)
    torch.manual_seed(0)
    he = create_model("resnet20", num_classes=10, norm="batch", weight_init="he")
    assert all(
        torch.equal(a, b)
        for a, b in zip(default.state_dict().values(), he.state_dict().values(), strict=True)
    )
    bare = create_model("plain20", num_classes=10, norm="none", weight_init="normal")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in bare.modules())
    convs = [m for m in bare.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and torch.cat([m.weight.flatten() for m in convs]).std().item() == pytest.approx(
        0.01, rel=0.02
    )
    assert bare.fc.weight.std().item() == pytest.approx(0.01, rel=0.1) and not bare.fc.bias.any()
    torch.manual_seed(0)
    torch_default = create_model("resnet20", num_classes=10, weight_init="torch")
    bound = 1 / (16 * 9) ** 0.5  # PyTorch's kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = torch_default.layer1[0].conv1.weight
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.9 * bound
    with pytest.raises(ValueError, match="norm"):
        create_model("resnet20", norm="group")
    with pytest.raises(ValueError, match="zero_init_residual"):
        create_model("resnet20", norm="none", zero_init_residual=True)


def test_a_diverged_seed_is_recorded_and_other_errors_are_not_swallowed(monkeypatch, tmp_path):
    def fake_train_arm(setup, arm, model, epochs, **config):
        if setup.seeds == (1,):
            raise CnnlabError("training diverged: loss nan at epoch 1, step 3")
        if setup.seeds == (2,):
            raise CnnlabError("no such dataset")
        return {"test_acc": spread([0.9])}

    monkeypatch.setattr(init_experiment, "train_arm", fake_train_arm)
    setup = make_setup(tmp_path, seeds=(0, 1), quiet=True)
    assert train_seeds(setup, "resnet20-he", "resnet20", 1) == [0.9, None]
    with pytest.raises(CnnlabError, match="no such dataset"):
        train_seeds(make_setup(tmp_path, seeds=(0, 2), quiet=True), "resnet20-he", "resnet20", 1)


ARMS = ("plain56-he", "plain56-torch", "plain56-normal", "resnet20-he", "resnet56-he", "resnet56-torch",
        "resnet56-normal")  # fmt: skip


def verdicts(ratios: list[list[float]], trained: dict[str, list[int]]) -> list[str]:
    """The verdicts of ``judge`` on the last/stem ratios of ``ARMS`` and the networks trained per seed."""
    ratio = {arm: spread(r) for arm, r in zip(ARMS, ratios, strict=True)}
    return [f["verdict"] for f in judge(ratio, {i: spread(n) for i, n in trained.items()}, [20, 56])]


def test_judge():
    supports = verdicts(
        [[0.5, 0.6], [1e-9, 1e-8], [0.0, 1e-20], [1.0, 1.2], [2.0, 2.5], [3.0, 4.0], [3.0, 5.0]],
        {"he": [4, 4], "torch": [2, 3], "normal": [0, 1]},
    )
    assert supports == [SUPPORTS] * 7
    # What the measurement shows without BatchNorm: He is the initialization under which x + F(x) grows.
    measured = verdicts(
        [[0.5, 0.6], [1e-9, 1e-8], [0.0, 1e-20], [8.0, 9.0], [1e4, 2e4], [0.7, 0.8], [0.5, 0.6]],
        {"he": [2, 2], "torch": [2, 2], "normal": [0, 0]},
    )
    assert measured == [SUPPORTS] * 4 + [CONTRADICTS] + [SUPPORTS] * 2
    overlapping = verdicts(
        [[1e-4, 0.6], [1e-5, 1e-3], [1e-4, 1e-2], [1.0, 3.0], [2.0, 2.5], [2.0, 4.0], [2.0, 5.0]],
        {"he": [2, 4], "torch": [2, 3], "normal": [1, 3]},
    )
    assert overlapping == [CANNOT_TELL] * 4 + [SUPPORTS] * 3
