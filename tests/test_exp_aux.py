"""`cnnlab experiment aux`: GoogLeNet with and without its auxiliary heads."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data import load
from cnnlab.data.augment import Normalize
from cnnlab.experiments import experiment
from cnnlab.experiments.arms import make_setup
from cnnlab.experiments.aux import aux_shares, early_norms, head_accuracies, judge, loss_parts
from cnnlab.experiments.claims import CANNOT_TELL, CONTRADICTS, SUPPORTS, VERDICTS, spread
from cnnlab.experiments.gradients import TOTAL
from cnnlab.loss import classification_loss
from cnnlab.rundir import load_run


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("aux")
    result = experiment("aux").run(make_setup(out, quick=True, live=False, quiet=True))
    return out, result


@pytest.mark.slow
def test_quick_run_writes_json_and_png(quick):
    out, _ = quick
    saved = json.loads((out / "aux.json").read_text())
    assert saved["experiment"] == "aux" and saved["verdict"] in VERDICTS
    assert len(saved["findings"]) == 2 and all(f["verdict"] in VERDICTS for f in saved["findings"])
    assert [row["arm"] for row in saved["arms"]] == ["aux", "no-aux"]
    assert (out / "aux.png").stat().st_size > 10_000
    assert saved["image_size"] == 28  # the quick digits are a store packed at 28x28: trained as packed
    runs = saved["runs"]
    assert set(runs["aux"]["early"]) == {TOTAL, "main", "aux"} and set(runs["no-aux"]["early"]) == {TOTAL}
    for arm in runs.values():
        assert len(arm["early"][TOTAL]) == 2  # seeds
        assert all(len(per_epoch) == saved["epochs"] + 1 for per_epoch in arm["early"][TOTAL])
    assert set(runs["aux"]["heads"]) == {"main", "aux1", "aux2"} and set(runs["no-aux"]["heads"]) == {"main"}
    assert 0 < saved["aux_share"]["mean"] < 1
    assert runs["aux"]["params"] > runs["no-aux"]["params"]


@pytest.mark.slow
def test_head_accuracies_against_a_direct_evaluation(quick):
    out, result = quick
    run_dir = result["runs"]["aux"]["run_dirs"][0]
    data = load(out / "quick-data")
    heads = head_accuracies(run_dir, data.test_images, data.test_labels)
    # The main head is what the trainer evaluated.
    assert heads["main"] == pytest.approx(result["runs"]["aux"]["test_acc"]["values"][0])
    # aux1 by hand: the eval-mode network up to 4a, then the head.
    model = load_run(run_dir)
    x = Normalize(model.data_config.mean, model.data_config.std)(data.test_images)
    with torch.no_grad():
        maps = model.inception4a(model.maxpool3(model.inception3b(model.inception3a(model.forward_stem(x)))))
        aux1 = model.aux1(maps).argmax(1)
    assert heads["aux1"] == pytest.approx((aux1 == data.test_labels).float().mean().item())


def test_loss_parts_add_up_to_the_trainers_loss():
    torch.manual_seed(0)
    main, aux1, aux2 = torch.randn(3, 6, 10).unbind(0)
    y = torch.randint(0, 10, (6,))
    parts = loss_parts((main, aux1, aux2), y)
    assert torch.allclose(parts["main"], F.cross_entropy(main, y))
    assert torch.allclose(parts["aux"], 0.3 * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y)))
    trainer, _ = classification_loss((main, aux1, aux2), y, label_smoothing=0.0)
    assert torch.allclose(parts["main"] + parts["aux"], trainer)
    assert list(loss_parts(main, y)) == ["main"]  # without the heads


def test_early_norms_combine_3a_and_3b():
    observed = [
        {TOTAL: {"inception3a": 3.0, "inception3b": 4.0}},
        {TOTAL: {"inception3a": 0.0, "inception3b": 2.0}},
    ]
    assert early_norms(observed, TOTAL) == [5.0, 2.0]


def test_aux_shares():
    early = {"main": [[3.0, 1.0], [1.0, 0.0]], "aux": [[1.0, 1.0], [3.0, 2.0]]}
    assert aux_shares(early) == [[0.25, 0.5], [0.75, 1.0]]


def test_judge():
    share = spread([0.1, 0.12, 0.11])
    high, low = spread([2.0, 2.2, 2.4]), spread([1.0, 1.2, 1.4])
    acc_high, acc_low = spread([0.95, 0.96, 0.97]), spread([0.90, 0.91, 0.92])
    supports = judge({"aux": high, "no-aux": low}, {"aux": acc_high, "no-aux": acc_low}, share)
    assert [f["verdict"] for f in supports] == [SUPPORTS, SUPPORTS]
    contradicts = judge({"aux": low, "no-aux": high}, {"aux": acc_low, "no-aux": acc_high}, share)
    assert [f["verdict"] for f in contradicts] == [CONTRADICTS, CONTRADICTS]
    overlap = spread([1.3, 2.1, 1.8])
    unsure = judge(
        {"aux": overlap, "no-aux": low}, {"aux": acc_high, "no-aux": spread([0.96, 0.9, 0.99])}, share
    )
    assert [f["verdict"] for f in unsure] == [CANNOT_TELL, CANNOT_TELL]
    assert "11.0%" in supports[0]["evidence"]  # the auxiliary part's share is shown
