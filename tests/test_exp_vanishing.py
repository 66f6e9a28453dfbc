"""`cnnlab experiment vanishing`: the gradient per conv layer of plain and residual twins."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import load
from cnnlab.experiments import experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread
from cnnlab.experiments.gradients import QUICK_PROBE_SIZE, probe_batch
from cnnlab.experiments.vanishing import EDGE, first_to_last, judge
from cnnlab.models import create_model
from cnnlab.runtime import channels_last_default

DEPTH = 20  # the quick run's twins: a third of resnet56's work, the same measurement


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("vanishing")
    result = experiment("vanishing").run(make_setup(out, quick=True, live=False, quiet=True), depth=DEPTH)
    return out, result


@pytest.mark.slow
def test_quick_run_writes_json_and_png(quick):
    out, _ = quick
    saved = json.loads((out / "vanishing.json").read_text())
    assert saved["experiment"] == "vanishing" and saved["verdict"] in VERDICTS
    assert [f["verdict"] in VERDICTS for f in saved["findings"]] == [True, True]
    assert [row["arm"] for row in saved["arms"]] == ["plain20", "resnet20"]
    assert all(row["convs"] == 19 for row in saved["arms"])
    assert (out / "vanishing.png").stat().st_size > 10_000
    for arm in saved["runs"].values():
        assert len(arm["norms"]) == 2  # seeds
        assert all(len(per_seed) == saved["epochs"] + 1 for per_seed in arm["norms"])  # init + each epoch
        assert all(len(norms) == 19 for per_seed in arm["norms"] for norms in per_seed)
        assert arm["ratios"][1][-1] == pytest.approx(first_to_last(arm["norms"][1][-1]))


@pytest.mark.slow
def test_initial_norms_equal_a_direct_backward_pass(quick):
    """Epoch 0 is the freshly seeded model: one plain backward pass over the probe batch gives the same
    norms, and the plain twin's differ from the residual one's."""
    out, result = quick
    images, labels = probe_batch(load(out / "quick-data"), QUICK_PROBE_SIZE)
    cpu = torch.device("cpu")
    for name in ("plain20", "resnet20"):
        torch.manual_seed(0)  # seed 0, as the trainer seeds before building the model
        model = create_model(name, num_classes=10, in_chans=1).train()
        # Laid out as the trainer lays it out: oneDNN's channels-last kernels round differently.
        model = model.to(
            memory_format=torch.channels_last if channels_last_default(cpu) else torch.contiguous_format
        )
        F.cross_entropy(model(images), labels).backward()
        hand = [m.weight.grad.norm().item() for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert result["runs"][name]["norms"][0][0] == pytest.approx(hand, rel=1e-6)
    plain, residual = (result["runs"][n]["norms"][0][0] for n in ("plain20", "resnet20"))
    assert plain[0] != pytest.approx(residual[0], rel=0.1)


def test_first_to_last():
    norms = [2.0] * EDGE + [7.0] * 5 + [0.5] * EDGE
    assert first_to_last(norms) == pytest.approx(4.0)
    assert first_to_last(list(reversed(norms))) == pytest.approx(0.25)


def test_judge():
    high, low = spread([30.0, 40.0, 50.0]), spread([2.0, 3.0, 4.0])
    supports = judge(
        {"resnet56": high, "plain56": low}, {"resnet56": high, "plain56": low}, "plain56", "resnet56"
    )
    assert [f["verdict"] for f in supports] == [SUPPORTS, SUPPORTS]
    contradicts = judge(
        {"resnet56": low, "plain56": high}, {"resnet56": low, "plain56": high}, "plain56", "resnet56"
    )
    assert [f["verdict"] for f in contradicts] == [CONTRADICTS, CONTRADICTS]
    overlap = spread([3.5, 10.0, 1.0])
    mixed = judge(
        {"resnet56": overlap, "plain56": low}, {"resnet56": high, "plain56": low}, "plain56", "resnet56"
    )
    assert [f["verdict"] for f in mixed] == [CANNOT_TELL, SUPPORTS]
    assert "resnet56" in mixed[0]["claim"] and "plain56" in mixed[0]["claim"]
