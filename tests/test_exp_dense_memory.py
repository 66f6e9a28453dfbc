"""`cnnlab experiment dense-memory`: activation memory and MACs of DenseNet-BC against ResNet, and the
memory-efficient DenseNet's trade-off."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.experiments import experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread
from cnnlab.experiments.dense_memory import check_pairs, densenet_bc, judge, saved_bytes
from cnnlab.models import create_model, num_params

PAIRS = [(10, 20), (16, 32)]  # the smallest DenseNet-BCs: the quick run measures, it does not compare


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dense-memory")
    return out, experiment("dense-memory").run(
        make_setup(out, quick=True, live=False, quiet=True), pairs=PAIRS
    )


@pytest.mark.slow
def test_quick_run_writes_json_and_png(quick):
    out, _ = quick
    saved = json.loads((out / "dense-memory.json").read_text())
    assert saved["experiment"] == "dense-memory" and saved["verdict"] in VERDICTS
    assert [f["verdict"] in VERDICTS for f in saved["findings"]] == [True] * 4
    assert [row["arm"] for row in saved["arms"]] == [
        "resnet20",
        "densenet_bc_10",
        "resnet32",
        "densenet_bc_16",
    ]
    resnet20 = saved["runs"]["resnet20"]
    assert resnet20["params"] == num_params("resnet20", num_classes=10, in_chans=1)
    assert resnet20["macs"] > 0 and "step_s" not in resnet20
    dense = saved["runs"]["densenet_bc_16"]
    assert len(dense["step_s"]["values"]) == len(dense["efficient_step_s"]["values"]) == 2  # the seeds
    assert dense["efficient_bytes"] < dense["activation_bytes"]
    assert (out / "dense-memory.png").stat().st_size > 10_000


def test_saved_bytes_of_conv_relu_by_hand():
    conv, x = nn.Conv2d(2, 3, 3, padding=1), torch.randn(4, 2, 5, 5)
    # The conv keeps its input (for the weight's gradient) and its weight, the ReLU its output; the
    # bias needs nothing.
    inputs, outputs, weight = 4 * 2 * 5 * 5 * 4, 4 * 3 * 5 * 5 * 4, 3 * 2 * 3 * 3 * 4
    assert saved_bytes(lambda: torch.relu(conv(x)), conv.parameters()) == inputs + outputs
    assert saved_bytes(lambda: torch.relu(conv(x))) == inputs + outputs + weight
    # An in-place ReLU keeps its result in the conv's output storage, a view shares it: counted once.
    assert (
        saved_bytes(lambda: torch.relu_(conv(x)).view(4, -1).exp(), conv.parameters()) == inputs + 2 * outputs
    )
    with torch.no_grad():  # negative control: nothing is kept for a backward pass that will not come
        assert saved_bytes(lambda: torch.relu(conv(x))) == 0


def test_densenet_bc_100_is_the_registered_one_and_memory_efficiency_keeps_the_gradients():
    torch.manual_seed(0)
    built = densenet_bc(100, num_classes=10).state_dict()
    torch.manual_seed(0)
    registered = create_model("densenet_bc_100", num_classes=10).state_dict()
    assert list(built) == list(registered) and all(torch.equal(built[k], registered[k]) for k in built)
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    grads = []
    for efficient in (False, True):
        torch.manual_seed(0)
        net = densenet_bc(16, num_classes=2, in_chans=1, memory_efficient=efficient)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        grads.append(torch.autograd.grad(loss, net.classifier.weight)[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_check_pairs():
    check_pairs([(100, 56), (40, 20)])
    for bad in ([(99, 56)], [(100, 57)], [(4, 20)], [(100, 50)], [(100, 26)]):  # resnet50 is ImageNet's
        with pytest.raises(CnnlabError, match="DenseNet-BC"):
            check_pairs(bad)


def arms(
    dense_bytes: float, dense_macs: float, efficient: float, times: list[float], efficient_times: list[float]
):
    return {
        "resnet20": {"params": 1000, "macs": 100_000, "activation_bytes": 50_000},
        "densenet_bc_52": {"params": 1000, "macs": dense_macs, "activation_bytes": dense_bytes,
                           "efficient_bytes": efficient, "step_s": spread(times),
                           "efficient_step_s": spread(efficient_times)},
    }  # fmt: skip


def test_judge():
    pairs = [("densenet_bc_52", "resnet20")]
    supports = judge(arms(400_000, 300_000, 200_000, [1.0, 1.1, 1.05], [1.3, 1.4, 1.35]), pairs)
    assert [f["verdict"] for f in supports] == [SUPPORTS] * 4
    contradicts = judge(arms(40_000, 90_000, 500_000, [1.3, 1.4], [1.0, 1.1]), pairs)
    assert [f["verdict"] for f in contradicts] == [CONTRADICTS] * 4
    within_noise = judge(arms(400_000, 300_000, 200_000, [1.0, 1.5], [1.2, 1.3]), pairs)
    assert [f["verdict"] for f in within_noise] == [SUPPORTS] * 3 + [CANNOT_TELL]
