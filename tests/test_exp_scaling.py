"""The scaling experiment: a small EfficientNet scaled by each rule to matched MACs; the search for
each rule's network, and the verdicts from constructed numbers."""

import argparse
import json
import math
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.experiments import experiment
from cnnlab.experiments import scaling as scaling_experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread

RULES = ("depth", "width", "resolution", "compound")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The base and the four rules at twice its MACs, on two seeds."""
    out = tmp_path_factory.mktemp("scaling")
    result = experiment("scaling").run(make_setup(out, quick=True, live=False, quiet=True), targets=[2.0])
    return result, out


@pytest.mark.slow
def test_quick_run_writes_the_json_and_the_figure(quick):
    result, out = quick
    saved = json.loads((out / "scaling.json").read_text())
    assert [row["arm"] for row in saved["arms"]] == ["base"] + [f"{rule}-2x" for rule in RULES]
    assert saved["verdict"] == result["verdict"] in VERDICTS and len(saved["findings"]) == 1
    assert (out / "scaling.png").stat().st_size > 10_000
    runs = saved["runs"]
    base = runs["base"]
    assert (base["depth_mult"], base["width_mult"], base["side"], base["macs_ratio"]) == (0.25, 0.25, 36, 1.0)
    for rule in RULES:
        arm = runs[f"{rule}-2x"]
        # Each network's MACs counted again, and within the rounding of 2x the base's.
        assert arm["macs"] == scaling_experiment.macs_of(arm, 1, 10)
        assert arm["macs_ratio"] == pytest.approx(arm["macs"] / base["macs"])
        assert 1.8 < arm["macs_ratio"] < 2.2
        assert len(arm["test_acc"]["values"]) == 2
    # A single-dimension rule moves its dimension only.
    assert runs["depth-2x"]["width_mult"] == 0.25 and runs["depth-2x"]["side"] == 36
    assert runs["width-2x"]["depth_mult"] == 0.25 and runs["width-2x"]["side"] == 36
    assert runs["resolution-2x"]["depth_mult"] == runs["resolution-2x"]["width_mult"] == 0.25


def test_rules_scale_as_the_paper_says():
    assert scaling_experiment.network("depth", 1.0) == {"depth_mult": 0.5, "width_mult": 0.25, "side": 36}
    assert scaling_experiment.network("width", 2.0) == {"depth_mult": 0.25, "width_mult": 0.5, "side": 36}
    assert scaling_experiment.network("resolution", 2.0)["side"] == 72
    # alpha, beta, gamma = 1.2, 1.1, 1.15 (Tan and Le 2019, Sec. 3.3): 36 x 1.15 = 41.4 -> 41 px.
    assert scaling_experiment.network("compound", 1.0) == {"depth_mult": 0.3, "width_mult": 0.275, "side": 41}


def test_the_search_keeps_the_closest_network_it_meets():
    """On a made-up cost where MACs grow as depth to the power 1.5, the first guess (phi = 1, depth
    0.5) misses 2x (2828); the secant through it and the next (phi = 0.5, 1682) lands on phi = 2/3."""

    def macs(net):
        return round(1000 * (net["depth_mult"] / 0.25) ** 1.5)

    net = scaling_experiment.closest("depth", 2000, macs)
    assert net["depth_mult"] == pytest.approx(0.25 * 2 ** (2 / 3), abs=1e-3)
    assert net["macs"] == 2000 and net["phi"] == pytest.approx(2 / 3, abs=1e-3)

    # Stairs of 3x in MACs (1000, 3000, 9000, ...): 3000 is the closest to 2000, whatever the last step.
    def stairs(net):
        return 1000 * 3 ** round(2 * math.log2(net["width_mult"] / 0.25))

    assert scaling_experiment.closest("width", 2000, stairs)["macs"] == 3000


def _arms() -> dict:
    arms = {"base": {"rule": "base", "target": 1.0, "macs_ratio": 1.0}}
    for rule in RULES:
        arms[f"{rule}-2x"] = {"rule": rule, "target": 2.0, "macs_ratio": 2.0}
    return arms


def _judge(compound, others=(0.90, 0.91, 0.92)):
    acc = {name: spread(others) for name in _arms()}
    acc["compound-2x"] = spread(compound)
    return scaling_experiment.judge(acc, _arms())


def test_judge_supports_compound_above_every_single_rule():
    (f,) = _judge([0.95, 0.96, 0.97])
    assert f["verdict"] == SUPPORTS and "2x" in f["claim"] and "compound (2.00x)" in f["evidence"]


def test_judge_contradicts_compound_below_them():
    assert _judge([0.80, 0.81, 0.82])[0]["verdict"] == CONTRADICTS


def test_judge_cannot_tell_within_the_spread():
    assert _judge([0.905, 0.915, 0.925])[0]["verdict"] == CANNOT_TELL


def test_targets_option():
    assert scaling_experiment.options(argparse.Namespace(targets="2,4")) == {"targets": [2.0, 4.0]}
    for bad in ("4,2", "1", "2,x"):
        with pytest.raises(CnnlabError):
            scaling_experiment.options(argparse.Namespace(targets=bad))
