"""What every experiment shares: the verdict rules, the quick dataset, the observer of `fit`, the
registry and its command line, and the templates and paths experiments (the other experiments have a
test file each)."""

import json
import re
from pathlib import Path

import pytest
import torch

from cnnlab.data import load
from cnnlab.errors import CnnlabError
from cnnlab.experiments import EXPERIMENTS, experiment
from cnnlab.experiments import paths as paths_experiment
from cnnlab.experiments import templates as templates_experiment
from cnnlab.experiments.arms import QUICK_PER_CLASS, make_setup
from cnnlab.experiments.claims import (
    CANNOT_TELL,
    CONTRADICTS,
    SUPPORTS,
    VERDICTS,
    all_of,
    cell,
    higher,
    lower,
    no_worse,
    spread,
    within,
)
from cnnlab.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent


def test_spread_is_the_mean_std_and_range_of_the_seeds():
    s = spread([0.97, 0.98, 0.99])
    assert s["mean"] == pytest.approx(0.98) and s["std"] == pytest.approx(0.01)
    assert (s["min"], s["max"], s["values"]) == (0.97, 0.99, [0.97, 0.98, 0.99])
    assert spread([5])["std"] == 0.0
    with pytest.raises(ValueError):
        spread([])


def test_arms_differ_only_when_their_seed_ranges_do_not_overlap():
    a, b = spread([0.97, 0.98, 0.99]), spread([0.94, 0.95, 0.96])
    assert higher(a, b) == SUPPORTS and higher(b, a) == CONTRADICTS
    assert lower(b, a) == SUPPORTS and lower(a, b) == CONTRADICTS
    touching = spread([0.96, 0.965, 0.97])
    assert higher(a, touching) == CANNOT_TELL  # 0.97 in both: inside the spread
    # A mean difference far larger than the std does not tell when one seed reaches over.
    assert higher(spread([0.90, 0.99, 0.99]), spread([0.91, 0.91, 0.91])) == CANNOT_TELL
    assert higher(2, 1) == SUPPORTS and higher(1, 1) == CANNOT_TELL  # one value: any difference tells


def test_no_worse_within_and_all_of():
    a, b = spread([0.97, 0.98]), spread([0.975, 0.985])
    assert no_worse(a, b) == SUPPORTS and no_worse(spread([0.5, 0.6]), b) == CONTRADICTS
    assert within(spread([0.02, 0.03]), 0, 0.05) == SUPPORTS
    assert within(spread([0.06, 0.07]), 0, 0.05) == CONTRADICTS
    assert within(spread([0.04, 0.06]), 0, 0.05) == CANNOT_TELL
    assert all_of([SUPPORTS, SUPPORTS]) == SUPPORTS
    assert all_of([SUPPORTS, CANNOT_TELL]) == CANNOT_TELL
    assert all_of([CANNOT_TELL, CONTRADICTS, SUPPORTS]) == CONTRADICTS


def test_cells_show_the_mean_and_spread_in_the_columns_units():
    assert cell(spread([0.97, 0.99]), "pct") == "98.00 ± 1.41%"
    assert cell(1234567, "int") == "1,234,567"
    assert cell(spread([2.0e6, 4.0e6]), "mb") == "3.0 ± 1.4 MB"
    assert cell(None, "pct") == "-" and cell(0.5, "x") == "0.50x"


@pytest.fixture(scope="module")
def quick_templates(tmp_path_factory):
    out = tmp_path_factory.mktemp("templates")
    return out, templates_experiment.run(make_setup(out, quick=True, live=False, quiet=True))


def test_the_quick_dataset_is_the_first_digits_of_each_class(tmp_path):
    from cnnlab.experiments.arms import quick_data

    data = load(quick_data(tmp_path))
    full = load("mnist5k")
    train, test = QUICK_PER_CLASS
    assert torch.bincount(data.train_labels).tolist() == [train] * 10
    assert torch.bincount(data.test_labels).tolist() == [test] * 10
    first_zero = (full.train_labels == 0).nonzero()[0].item()
    assert torch.equal(data.train_images[data.train_labels == 0][0], full.train_images[first_zero])
    assert quick_data(tmp_path) == str(tmp_path / "quick-data")  # made once, then found


@pytest.mark.slow
def test_an_observer_sees_every_epoch_and_leaves_the_training_unchanged(tmp_path):
    data = make_setup(tmp_path, quick=True).data
    seen = []

    def observe(model: torch.nn.Module, epoch: int) -> dict:
        seen.append((epoch, model.training))
        torch.rand(1000)  # draws from the global generator, which the training must not notice
        return {"epoch": epoch}

    def train(name: str, observer) -> tuple[dict, torch.Tensor]:
        result = fit(
            TrainConfig(model="linear", data=data, epochs=2, out=str(tmp_path / name)),
            quiet=True,
            observe=observer,
        )
        return result, torch.get_rng_state()

    watched, state = train("watched", observe)
    plain, plain_state = train("plain", None)
    assert seen == [(0, True), (1, True), (2, True)]
    assert watched["observed"] == [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}] and "observed" not in plain
    assert watched["test_acc"] == plain["test_acc"] and torch.equal(state, plain_state)
    assert "observed" not in json.loads((tmp_path / "watched" / "result.json").read_text())


def test_every_experiment_has_a_claim_a_judge_and_a_run():
    for name in EXPERIMENTS:
        module = experiment(name)
        assert module.CLAIM.endswith(".") and module.HELP, name
        assert callable(module.run) and callable(module.judge), name


def test_the_readme_links_every_experiment_to_its_result():
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    linked = re.findall(
        r"`cnnlab experiment ([\w-]+)` \| \[[\w-]+\]\(docs/results\.md#experiment-([\w-]+)\)", readme
    )
    assert [a for a, _ in linked] == list(EXPERIMENTS) and all(a == b for a, b in linked)
    missing = [name for name in EXPERIMENTS if f'<a id="experiment-{name}"></a>' not in results]
    assert not missing, f"docs/results.md has no result for {missing}: run them and `make results`"


@pytest.mark.slow
def test_templates_over_seeds(quick_templates):
    out, r = quick_templates
    assert r["verdict"] in VERDICTS and len(r["findings"]) == 1
    assert [len(s["correlation_with_own_mean"]) for s in r["per_seed"]] == [10, 10]
    own = [s["mean_correlation_own"] for s in r["per_seed"]]
    assert r["arms"][0]["own"]["values"] == own
    assert json.loads((out / "templates.json").read_text())["arms"] == r["arms"]
    assert (out / "templates.png").stat().st_size > 10_000


def test_templates_judge():
    assert templates_experiment.judge(spread([0.6, 0.7]), spread([0.0, 0.1]))[0]["verdict"] == SUPPORTS
    assert templates_experiment.judge(spread([0.0, 0.1]), spread([0.6, 0.7]))[0]["verdict"] == CONTRADICTS
    assert templates_experiment.judge(spread([0.1, 0.7]), spread([0.0, 0.2]))[0]["verdict"] == CANNOT_TELL


def test_paths_judge():
    res, plain = spread([0.95, 0.96, 0.97]), spread([0.10, 0.11, 0.12])
    supported = paths_experiment.judge(res, plain, spread([3.0, 3.2, 3.4]), 4.5)
    assert [f["verdict"] for f in supported] == [SUPPORTS, SUPPORTS]
    contradicted = paths_experiment.judge(plain, res, spread([4.6, 4.8, 5.0]), 4.5)
    assert [f["verdict"] for f in contradicted] == [CONTRADICTS, CONTRADICTS]
    unsure = paths_experiment.judge(res, spread([0.5, 0.96]), spread([4.0, 5.0]), 4.5)
    assert [f["verdict"] for f in unsure] == [CANNOT_TELL, CANNOT_TELL]


@pytest.mark.slow
def test_experiment_from_the_command_line(cli, tmp_path):
    proc = cli("experiment", "templates", "--quick", "--epochs", "2", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["setup"]["seeds"] == [0, 1] and r["setup"]["quick"] and r["verdict"] in VERDICTS
    assert r["epochs"] == 2 and [s["model"] for s in r["per_seed"]] == ["linear", "linear"]
    assert json.loads((tmp_path / "templates.json").read_text())["verdict"] == r["verdict"]
    for bad, message in ((["--seeds", "0,0"], "distinct"), (["--seeds", "a"], "comma-separated")):
        proc = cli("experiment", "templates", "--out", str(tmp_path), *bad)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1
    proc = cli("experiment", "degradation", "--depths", "20", "--out", str(tmp_path))
    assert proc.returncode == 2 and "two increasing" in proc.stderr and proc.stderr.count("\n") == 1
    proc = cli("experiment", "--help")
    assert proc.returncode == 0 and all(name in proc.stdout for name in EXPERIMENTS)


def test_make_setup_keeps_a_given_dataset_and_budget(tmp_path):
    setup = make_setup(tmp_path, data="cifar10", quick=True, epochs=3)
    assert setup.data == "cifar10" and setup.seeds == (0, 1) and setup.budget(10) == 3
    assert make_setup(tmp_path).budget(10) == 10 and make_setup(tmp_path).seeds == (0, 1, 2)
    assert not (tmp_path / "quick-data").exists()
    with pytest.raises(CnnlabError):
        experiment("degradation").twin_names([20])
