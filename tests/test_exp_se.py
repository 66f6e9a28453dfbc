"""The se experiment: resnet20 against its SE twins, their costs and the class-specificity of the
excitations; the verdicts from constructed numbers, and the costs against a count by hand."""

import argparse
import json
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.experiments import experiment
from cnnlab.experiments import se as se_experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """r = 8 and 16 build one network at resnet20's widths: two networks train, on two seeds."""
    out = tmp_path_factory.mktemp("se")
    result = experiment("se").run(make_setup(out, quick=True, live=False, quiet=True), reductions=[8, 16])
    return result, out


@pytest.mark.slow
def test_quick_run_writes_the_json_and_the_figure(quick):
    result, out = quick
    saved = json.loads((out / "se.json").read_text())
    assert [row["arm"] for row in saved["arms"]] == ["resnet20", "se-r8", "se-r16"]
    assert saved["verdict"] == result["verdict"] in VERDICTS and len(saved["findings"]) == 5
    assert all(f["verdict"] in VERDICTS for f in saved["findings"])
    assert saved["studied"] == "se-r16"
    assert [len(s["class_spread"]) for s in saved["class_spread_by_block"]] == [9, 9]  # 9 SE blocks, 2 seeds
    assert (out / "se.png").stat().st_size > 10_000
    # r = 16 is not trained again: it is r = 8's network, and shows r = 8's runs and numbers.
    runs = saved["runs"]
    assert runs["se-r16"]["same_as"] == "se-r8" and runs["se-r16"]["run_dirs"] == runs["se-r8"]["run_dirs"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["resnet20", "se-r8"]


@pytest.mark.slow
def test_costs_equal_a_count_by_hand(quick):
    """Each SE block at C channels and width 8: fc1 8C weights + 8 biases, fc2 8C + C; on its 1x1
    map 16C MACs. resnet20 has three blocks at each of 16, 32 and 64 channels."""
    runs = quick[0]["runs"]
    base, se = runs["resnet20"], runs["se-r8"]
    assert se["params"] - base["params"] == sum(3 * (17 * c + 8) for c in (16, 32, 64)) == 5784
    assert se["macs"] - base["macs"] == sum(3 * 16 * c for c in (16, 32, 64)) == 5376
    assert se["extra_params"] == pytest.approx(5784 / base["params"])
    ratios = [s / b for s, b in zip(se["speed"]["values"], base["speed"]["values"], strict=True)]
    assert len(ratios) == se_experiment.SPEED_REPEATS and se["speed_ratio"]["values"] == pytest.approx(ratios)


def test_se_widths_are_rounded_to_multiples_of_eight():
    # C / r for 16, 32, 64 channels: r = 4 gives 4, 8, 16 -> 8, 8, 16; r = 16 gives 1, 2, 4 -> 8 each.
    assert se_experiment.se_widths(4) == (8, 8, 16)
    assert (
        se_experiment.se_widths(8) == se_experiment.se_widths(16) == se_experiment.se_widths(32) == (8, 8, 8)
    )


def _judge(se_acc, base_acc=(0.95, 0.96, 0.97), extra_params=0.02, speed=(0.95, 0.97, 0.99), last=0.02):
    acc = {
        "resnet20": spread(base_acc),
        "se-r4": spread([a - 0.01 for a in se_acc]),
        "se-r16": spread(se_acc),
    }
    return se_experiment.judge(
        acc,
        {"resnet20": 0.0, "se-r4": 0.03, "se-r16": extra_params},
        {"resnet20": 0.0, "se-r4": 0.0003, "se-r16": 0.0002},
        {"resnet20": spread([1, 1, 1]), "se-r4": spread(speed), "se-r16": spread(speed)},
        spread([0.004, 0.005, 0.006]),
        spread([last, last + 0.001, last + 0.002]),
    )


def test_judge_supports_a_gain_at_a_small_cost():
    findings = _judge([0.98, 0.985, 0.99])
    assert [f["verdict"] for f in findings] == [SUPPORTS] * 5
    assert "se-r16" in findings[0]["claim"]  # the most accurate SE arm is judged


def test_judge_contradicts_a_loss_or_a_large_cost():
    verdicts = [f["verdict"] for f in _judge([0.90, 0.91, 0.92], extra_params=0.15, speed=(0.5, 0.6, 0.7))]
    assert verdicts == [CONTRADICTS, CONTRADICTS, SUPPORTS, CONTRADICTS, SUPPORTS]
    assert _judge([0.98, 0.985, 0.99], last=0.001)[4]["verdict"] == CONTRADICTS


def test_judge_cannot_tell_within_the_spread():
    findings = _judge([0.955, 0.965, 0.975], speed=(0.85, 0.9, 0.95), last=0.005)
    assert [f["verdict"] for f in findings] == [CANNOT_TELL, SUPPORTS, SUPPORTS, CANNOT_TELL, CANNOT_TELL]


def test_reductions_option():
    assert se_experiment.options(argparse.Namespace(reductions="4,16")) == {"reductions": [4, 16]}
    for bad in ("4,4", "0", "4,x"):
        with pytest.raises(CnnlabError):
            se_experiment.options(argparse.Namespace(reductions=bad))
