"""`cnnlab experiment kernels`: stacks of 3x3 convs against one 5x5 or 7x7."""

import json
from pathlib import Path

import pytest

from cnnlab.experiments import experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread
from cnnlab.experiments.kernels import ARMS, costs, judge

# conv2's weights and biases at 16 maps in and out, by hand: one k x k conv, or (k-1)/2 3x3 convs.
CONV2 = {
    "5x5": 16 * 16 * 25 + 16,
    "2x3x3": 2 * (16 * 16 * 9 + 16),
    "7x7": 16 * 16 * 49 + 16,
    "3x3x3": 3 * (16 * 16 * 9 + 16),
}
# The receptive field by hand: conv1 k, pool 2 (k + 1, stride 2), conv2 k at stride 2 (+ 2(k - 1)),
# pool 2 at stride 2 (+ 2): 3k + 1, the same whether a k x k window is one conv or a stack.
RF = {"5x5": 16, "2x3x3": 16, "7x7": 22, "3x3x3": 22}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("kernels")
    result = experiment("kernels").run(make_setup(out, quick=True, live=False, quiet=True))
    return out, result


@pytest.mark.slow
def test_quick_run_writes_json_and_png(quick):
    out, _ = quick
    saved = json.loads((out / "kernels.json").read_text())
    assert saved["experiment"] == "kernels" and saved["verdict"] in VERDICTS
    assert [f["verdict"] for f in saved["findings"]][:2] == [SUPPORTS, SUPPORTS]  # counted, not trained
    assert saved["findings"][2]["verdict"] in VERDICTS
    assert [row["arm"] for row in saved["arms"]] == ["5x5", "2x3x3", "7x7", "3x3x3"]
    assert {row["arm"]: row["conv2"] for row in saved["arms"]} == CONV2
    assert {row["arm"]: row["rf"] for row in saved["arms"]} == RF
    assert all(row["speed"] > 0 and len(row["test_acc"]["values"]) == 2 for row in saved["arms"])
    assert (out / "kernels.png").stat().st_size > 10_000
    stack = saved["runs"]["3x3x3"]
    assert stack["params"] == saved["costs"]["3x3x3"]["params"]  # the network trained is the one counted
    assert all(len(curve) == saved["epochs"] for curve in stack["curves"]["test_acc"])


@pytest.mark.parametrize("arm", ["5x5", "2x3x3", "7x7", "3x3x3"])
def test_costs_count_conv2_and_the_receptive_field_by_hand(arm):
    kernel, stack = ARMS[arm]
    c = costs(kernel, stack, (1, 28, 28), 10)
    assert (c["conv2"], c["rf"]) == (CONV2[arm], RF[arm])


def test_costs_macs_of_the_two_3x3_network_by_hand():
    fc = 400 * 120 + 120 * 84 + 84 * 10
    conv1 = 28 * 28 * 16 * 9 * (1 + 16)  # two 3x3 convs at 28x28, 'same' padding
    conv2 = 16 * 16 * 9 * (12 * 12 + 10 * 10)  # 14 -> 12 -> 10, unpadded
    c = costs(5, True, (1, 28, 28), 10)
    assert c["macs"] == conv1 + conv2 + fc
    conv1_params = (1 * 16 * 9 + 16) + (16 * 16 * 9 + 16)
    assert c["params"] == conv1_params + CONV2["2x3x3"] + fc + 120 + 84 + 10


def cost(**conv2):
    c = {arm: {"conv2": CONV2[arm], "params": 70_000, "rf": RF[arm]} for arm in CONV2}
    for arm, n in conv2.items():
        c[arm]["conv2"] = n
    return c


def test_judge_supports_contradicts_and_cannot_tell():
    acc = {arm: spread([0.97, 0.98]) for arm in CONV2}
    assert [f["verdict"] for f in judge(cost(), acc)] == [SUPPORTS] * 3
    assert "2x3x3: 4,640 against 6,416 (5x5)" in judge(cost(), acc)[0]["evidence"]
    worse = {**acc, "3x3x3": spread([0.90, 0.92])}  # below every seed of 7x7
    assert [f["verdict"] for f in judge(cost(), worse)] == [SUPPORTS, SUPPORTS, CONTRADICTS]
    heavier = cost(**{"2x3x3": 7_000})
    assert judge(heavier, acc)[0]["verdict"] == CONTRADICTS
    equal = cost(**{"3x3x3": CONV2["7x7"]})  # a tie of two exact counts tells nothing either way
    assert judge(equal, acc)[0]["verdict"] == CANNOT_TELL
    wider = {arm: {**c, "rf": c["rf"] + (2 if arm == "3x3x3" else 0)} for arm, c in cost().items()}
    assert judge(wider, acc)[1]["verdict"] == CONTRADICTS
