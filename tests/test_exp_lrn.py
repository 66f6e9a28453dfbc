"""`cnnlab experiment lrn`: AlexNet with LRN, with BatchNorm and with neither."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.experiments import experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread
from cnnlab.experiments.lrn import block_ratios, change, judge, peak_to_mean
from cnnlab.layers import LocalResponseNorm


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("lrn")
    result = experiment("lrn").run(make_setup(out, quick=True, live=False, quiet=True))
    return out, result


@pytest.mark.slow
def test_quick_run_writes_json_and_png(quick):
    out, _ = quick
    saved = json.loads((out / "lrn.json").read_text())
    assert saved["experiment"] == "lrn" and saved["verdict"] in VERDICTS
    assert len(saved["findings"]) == 4 and all(f["verdict"] in VERDICTS for f in saved["findings"])
    assert [row["arm"] for row in saved["arms"]] == ["lrn", "bn", "neither"]
    assert (out / "lrn.png").stat().st_size > 10_000
    params = {row["arm"]: row["params"] for row in saved["arms"]}
    assert params["lrn"] == params["neither"]  # LRN has no weights
    assert params["bn"] - params["lrn"] == 2 * (32 + 96)  # a scale and a shift per map of conv1, conv2
    for arm, ratio in saved["ratio"].items():
        for key in ("before", "after"):
            assert len(ratio[key]) == 2 and all(len(s["values"]) == 2 for s in ratio[key])  # blocks, seeds
            assert all(s["min"] >= 1 for s in ratio[key])  # a maximum is at least the mean
        if arm == "neither":  # no norm layer: the same activations
            assert ratio["before"] == ratio["after"]
        else:
            assert ratio["before"] != ratio["after"]
    assert all(len(curve) == saved["epochs"] for curve in saved["runs"]["bn"]["curves"]["test_acc"])


def test_peak_to_mean_by_hand():
    # Two images, three channels, two positions each. Image 0: position 0 has channels (1, 2, 3),
    # max 3 over mean 2 = 1.5; position 1 is all zero and is left out. Image 1: (-4, 0, 2) counts as
    # (4, 0, 2), 4 / 2 = 2; (0, 0, 5): 5 / (5/3) = 3.
    x = torch.tensor(
        [
            [[[1.0, 0.0]], [[2.0, 0.0]], [[3.0, 0.0]]],
            [[[-4.0, 0.0]], [[0.0, 0.0]], [[2.0, 5.0]]],
        ]
    )
    assert x.shape == (2, 3, 1, 2)
    total, positions = peak_to_mean(x)
    assert positions == 3
    assert total == pytest.approx(1.5 + 2.0 + 3.0)


def ratio_by_hand(a: torch.Tensor) -> float:
    a = a.abs().flatten(2)  # (N, C, positions)
    ratios = [a[n, :, p].max() / a[n, :, p].mean() for n in range(a.shape[0]) for p in range(a.shape[2])]
    return torch.stack([r for r in ratios if torch.isfinite(r)]).mean().item()


@pytest.mark.parametrize("norm", [LocalResponseNorm(size=3, alpha=1.0, k=1.0), nn.BatchNorm2d(4), None])
def test_block_ratios_read_the_input_and_output_of_each_norm(norm):
    torch.manual_seed(0)
    block1 = [nn.Conv2d(2, 4, 3), nn.ReLU(), *([norm] if norm else []), nn.MaxPool2d(2)]
    block2 = [nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 2, 1), nn.ReLU()]
    features = nn.Sequential(*block1, *block2).eval()
    if isinstance(norm, nn.BatchNorm2d):  # a running mean that shifts the output
        norm.running_mean.uniform_(0, 1)
    x = torch.randn(5, 2, 12, 12)
    ratios = block_ratios(features, x, batch_size=2)  # batches of 2, 2 and 1 images
    with torch.no_grad():
        relu1, out1 = features[:2](x), features[: 3 if norm else 2](x)
        at2 = features[: len(block1) + 2](x)
    assert ratios["before"] == pytest.approx([ratio_by_hand(relu1), ratio_by_hand(at2)], rel=1e-6)
    assert ratios["after"] == pytest.approx([ratio_by_hand(out1), ratio_by_hand(at2)], rel=1e-6)
    assert (ratios["before"][0] == ratios["after"][0]) == (norm is None)


def numbers(bn_acc, lrn_after, lrn_before=(6.0, 8.0), neither=(6.0, 8.0)):
    acc = {"lrn": spread([0.96, 0.97]), "bn": spread(bn_acc), "neither": spread([0.94, 0.95])}
    ratio = {
        "lrn": {
            "before": [spread([b, b + 0.1]) for b in lrn_before],
            "after": [spread(a) for a in lrn_after],
        },
        "neither": {"after": [spread([n, n + 0.1]) for n in neither]},
    }
    return acc, ratio


def test_judge_supports_contradicts_and_cannot_tell():
    acc, ratio = numbers(bn_acc=[0.97, 0.98], lrn_after=[[4.0, 4.1], [5.0, 5.1]])
    assert [f["verdict"] for f in judge(acc, ratio)] == [SUPPORTS] * 4
    # BatchNorm below every LRN seed: contradicted
    acc, ratio = numbers(bn_acc=[0.90, 0.91], lrn_after=[[4.0, 4.1], [5.0, 5.1]])
    assert [f["verdict"] for f in judge(acc, ratio)][2] == CONTRADICTS
    # LRN's block 2 output within the spread of its input: cannot tell for that part
    acc, ratio = numbers(bn_acc=[0.97, 0.98], lrn_after=[[4.0, 4.1], [7.9, 8.1]])
    verdicts = [f["verdict"] for f in judge(acc, ratio)]
    assert verdicts[:2] == [CANNOT_TELL, CANNOT_TELL] and verdicts[2] == SUPPORTS
    assert "block 2: 8.00 ± 0.14" in judge(acc, ratio)[0]["evidence"]


def test_the_change_the_norm_layer_makes_is_paired_seed_by_seed():
    # each seed's ratio falls by 1% while the seeds spread over 10%: the spreads overlap, the change shows
    before = [spread([5.0, 5.5]), spread([10.0, 11.0])]
    after = [spread([4.95, 5.445]), spread([9.9, 10.89])]
    assert change(after, before) == "the norm layer changes it by block 1 -1%, block 2 -1% (mean over seeds)"
