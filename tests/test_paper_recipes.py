"""The papers' recipes and the schedules they run on, torch's own: the rate at each step against what
the paper writes (or a closed form), the batch rule, flags over the paper, and checkpoints that carry a
schedule through a resume."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler

from cnnlab import cli, data, rundir
from cnnlab.errors import CnnlabError
from cnnlab.models import describe_models, list_models, paper_recipe_of, recipe_of
from cnnlab.models.recipe import ABOUT, DEFAULT, FIELDS, Recipe
from cnnlab.train import TrainConfig
from cnnlab.train.config import apply_recipe
from cnnlab.train.inputs import plan_epochs as _epochs
from cnnlab.train.schedule import load_scheduler_state, make_optimizer, restore_rates

PAPER_MODELS = [name for name in list_models() if paper_recipe_of(name) is not None]


def _model() -> torch.nn.Module:
    return torch.nn.Linear(2, 2)


def _rates(scheduler: lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The rate of the first parameter group at each of ``steps`` optimizer steps, as the training
    loop sees it: read before the step, the scheduler stepped after it."""
    optimizer = scheduler.optimizer
    rates = []
    with warnings.catch_warnings():  # the scheduler alone is stepped: no gradients needed to read rates
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            scheduler.step()
    return rates


def _paper_settings(model: str, **flags: object) -> TrainConfig:
    return apply_recipe(TrainConfig(model=model, recipe="paper", **flags))


def _paper_epochs(settings: TrainConfig) -> int:
    return recipe_of(settings.model, paper=True).epochs  # type: ignore[arg-type]


def _schedule(settings: TrainConfig, total: int, warmup: int, steps_per_epoch: int = 1):
    _, scheduler = make_optimizer(_model(), settings, total, warmup, steps_per_epoch)
    return scheduler


# --- the papers' milestones -------------------------------------------------------------------------


def test_cifar_resnet_divides_by_ten_at_32k_and_48k_of_64k_iterations():
    settings = _paper_settings("resnet20")
    assert (settings.batch_size, settings.lr) == (128, 0.1)  # the paper's batch, so the paper's rate
    lr = _rates(_schedule(settings, total=64_000, warmup=0), 64_000)
    assert lr[0] == lr[31_999] == 0.1
    assert lr[32_000] == pytest.approx(0.01, rel=1e-12) and lr[47_999] == pytest.approx(0.01, rel=1e-12)
    assert lr[48_000] == pytest.approx(0.001, rel=1e-12) and lr[63_999] == pytest.approx(0.001, rel=1e-12)


def test_cifar_resnet_recipe_is_64k_iterations_of_cifar10():
    recipe, steps_per_epoch = recipe_of("resnet20", paper=True), 50_000 // 128
    assert recipe.data == "cifar10" and recipe.data in data.list_datasets()
    assert abs(recipe.epochs * steps_per_epoch - 64_000) < steps_per_epoch  # 164 epochs: 63,960 steps


def test_resnet110_warms_up_at_a_tenth_and_keeps_the_papers_iteration_counts():
    settings = _paper_settings("resnet110")
    warmup = round(settings.warmup_epochs * 390)
    lr = _rates(_schedule(settings, total=64_000, warmup=warmup, steps_per_epoch=390), 64_000)
    assert lr[:warmup] == pytest.approx([0.01] * warmup, rel=1e-12)  # held, not ramped
    assert lr[warmup] == 0.1 and lr[31_999] == 0.1  # back to 0.1, and the milestones count from step 0
    assert lr[32_000] == pytest.approx(0.01, rel=1e-12) and lr[48_000] == pytest.approx(0.001, rel=1e-12)


def test_efficientnet_warms_up_for_5_epochs_then_loses_3_percent_every_2_4_epochs():
    settings = _paper_settings("efficientnet_b0")
    assert (settings.batch_size, settings.lr, settings.optimizer) == (4096, 0.256, "rmsprop")
    per_epoch = 100
    warmup, every = 5 * per_epoch, round(2.4 * per_epoch)
    lr = _rates(_schedule(settings, 350 * per_epoch, warmup, per_epoch), warmup + 3 * every + 1)
    assert lr[:warmup] == pytest.approx([0.256 * (k + 1) / (warmup + 1) for k in range(warmup)], rel=1e-9)
    assert lr[warmup] == lr[warmup + every - 1] == 0.256
    assert lr[warmup + every] == pytest.approx(0.256 * 0.97, rel=1e-12)
    assert lr[warmup + 2 * every] == pytest.approx(0.256 * 0.97**2, rel=1e-12)
    assert lr[warmup + 3 * every] == pytest.approx(0.256 * 0.97**3, rel=1e-12)


def test_googlenet_loses_4_percent_every_8_epochs():
    settings = _paper_settings("googlenet")
    per_epoch = 40
    lr = _rates(_schedule(settings, _paper_epochs(settings) * per_epoch, 0, per_epoch), 16 * per_epoch + 1)
    assert lr[0] == lr[8 * per_epoch - 1] == settings.lr
    assert lr[8 * per_epoch] == pytest.approx(settings.lr * 0.96, rel=1e-12)
    assert lr[16 * per_epoch] == pytest.approx(settings.lr * 0.96**2, rel=1e-12)


@pytest.mark.parametrize(
    ("model", "epochs"),
    [("densenet_bc_100", (150, 225)), ("densenet121", (30, 60)), ("se_resnet50", (30, 60, 90))],
)
def test_fixed_milestones_fall_on_the_papers_epochs(model, epochs):
    settings = _paper_settings(model)
    per_epoch = 10
    total = _paper_epochs(settings) * per_epoch
    lr = _rates(_schedule(settings, total, 0, per_epoch), total)
    drops = [step for step in range(1, total) if lr[step] < lr[step - 1]]
    assert drops == [e * per_epoch for e in epochs]
    assert all(lr[s] == pytest.approx(lr[s - 1] * settings.gamma, rel=1e-12) for s in drops)


# --- the schedules against closed forms -------------------------------------------------------------


def _cosine_settings(**changes: object) -> TrainConfig:
    return dataclasses.replace(
        apply_recipe(TrainConfig(model="resnet20")), **{"schedule": "cosine", **changes}
    )


def _warmup_cosine(peak: float, total: int, warmup: int) -> Callable[[int], float]:
    def rate(k: int) -> float:
        if k < warmup:
            return peak * (k + 1) / (warmup + 1)
        return peak * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))

    return rate


def test_warmup_then_cosine_is_the_closed_form_at_every_step():
    settings = _cosine_settings(lr=0.4)
    total, warmup = 300, 25
    lr = _rates(_schedule(settings, total, warmup), total + 1)
    expected = _warmup_cosine(0.4, total, warmup)
    assert lr[:total] == pytest.approx([expected(k) for k in range(total)], rel=1e-9, abs=1e-15)
    assert lr[warmup] == 0.4 and lr[total] == pytest.approx(0.0, abs=1e-15)  # the peak, then 0 at the end


class _DoubleSteppingSequentialLR(lr_scheduler.SequentialLR):
    """A SequentialLR that steps its next schedule once more at the milestone, as some torch versions
    did: the control that shows the closed-form test can fail."""

    def step(self) -> None:  # type: ignore[override]
        super().step()
        if self.last_epoch in self._milestones:
            self._schedulers[1].step()


def test_a_double_step_at_the_warmup_milestone_would_be_caught():
    settings = _cosine_settings(lr=0.4)
    total, warmup = 300, 25
    expected = [_warmup_cosine(0.4, total, warmup)(k) for k in range(total)]
    _, scheduler = make_optimizer(_model(), settings, total, warmup)
    assert isinstance(scheduler, lr_scheduler.SequentialLR) and scheduler._milestones == [warmup]
    twin = torch.optim.SGD(_model().parameters(), lr=0.4, momentum=0.9)
    warm = lr_scheduler.LinearLR(twin, start_factor=1 / (warmup + 1), total_iters=warmup)
    cosine = lr_scheduler.CosineAnnealingLR(twin, T_max=total - warmup)
    doubled = _DoubleSteppingSequentialLR(twin, [warm, cosine], milestones=[warmup])
    ours, theirs = _rates(scheduler, total), _rates(doubled, total)
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert theirs[:warmup] == pytest.approx(expected[:warmup])  # identical up to the milestone ...
    assert theirs != pytest.approx(expected, rel=1e-9, abs=1e-15)  # ... and caught after it


def test_step_milestones_are_fractions_of_the_whole_run_and_one_step_after_warmup_is_kept():
    settings = dataclasses.replace(_cosine_settings(), schedule="step", milestones=(0.11, 0.5), gamma=0.5)
    total, warmup = 100, 10
    lr = _rates(_schedule(settings, total, warmup), total)
    peak = settings.lr
    assert lr[warmup] == peak  # the main schedule starts at its own step 0, undecayed
    assert lr[11] == pytest.approx(peak * 0.5, rel=1e-12) and lr[10] == peak  # milestone 0.11 -> step 11
    assert lr[49] == pytest.approx(peak * 0.5, rel=1e-12) and lr[50] == pytest.approx(peak * 0.25, rel=1e-12)


def test_onecycle_peaks_at_30_percent_keeps_the_momentum_and_ends_near_zero():
    settings = _cosine_settings(lr=0.2, schedule="onecycle")
    optimizer, scheduler = make_optimizer(_model(), settings, 100, warmup_steps=5)
    assert isinstance(scheduler, lr_scheduler.OneCycleLR)
    lr = _rates(scheduler, 100)
    assert max(lr) == pytest.approx(0.2) and lr.index(max(lr)) in (29, 30)
    assert lr[0] == pytest.approx(0.2 / 25) and lr[-1] < 1e-4
    assert optimizer.param_groups[0]["momentum"] == settings.momentum


@pytest.mark.parametrize(
    "changes",
    [
        {"schedule": "cosine"},
        {"schedule": "step", "milestones": (0.3, 0.6)},
        {"schedule": "exponential", "decay_every": 0.5, "gamma": 0.9},
        {"schedule": "step", "warmup_factor": 0.1},
        {"schedule": "onecycle"},
    ],
    ids=lambda c: "-".join(str(v) for v in c.values()),
)
def test_a_checkpointed_schedule_continues_as_the_uninterrupted_one(tmp_path, changes):
    settings = _cosine_settings(**changes)
    total, warmup, per_epoch, cut = 60, 6, 10, 23
    whole = _rates(_schedule(settings, total, warmup, per_epoch), total)
    optimizer, scheduler = make_optimizer(_model(), settings, total, warmup, per_epoch)
    _rates(scheduler, cut)
    path = tmp_path / "checkpoint.pt"
    rundir.save_checkpoint({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path)
    state = rundir.load_checkpoint(path)  # weights_only: every scheduler's state must pass it
    optimizer, scheduler = make_optimizer(_model(), settings, total, warmup, per_epoch)
    load_scheduler_state(scheduler, state["scheduler"])  # in the training loop's order
    optimizer.load_state_dict(state["optimizer"])
    restore_rates(scheduler, optimizer)
    assert _rates(scheduler, total - cut) == whole[cut:]  # equal, not close


def test_a_checkpoint_of_the_old_lambda_schedule_is_replayed_on_torchs():
    settings = _cosine_settings(lr=0.3)
    total, warmup, taken = 50, 5, 17
    expected = _rates(_schedule(settings, total, warmup), total)
    optimizer, scheduler = make_optimizer(_model(), settings, total, warmup)
    old_optimizer = optimizer.state_dict()
    old_optimizer["param_groups"][0]["lr"] = 0.123  # whatever the hand-written factor had set
    old = {"lr_lambdas": [None], "base_lrs": [0.3], "last_epoch": taken, "_step_count": taken + 1}
    load_scheduler_state(scheduler, old)
    optimizer.load_state_dict(old_optimizer)
    restore_rates(scheduler, optimizer)
    assert _rates(scheduler, total - taken) == expected[taken:]


# --- recipes, flags and the batch ----------------------------------------------------------------


def test_a_paper_recipes_rate_is_for_the_papers_batch():
    densenet = recipe_of("densenet_bc_100", paper=True)
    config = _paper_settings("densenet_bc_100")
    assert (config.batch_size, config.lr) == (densenet.batch_size, densenet.lr)
    assert {"batch_size", "lr", "milestones", "gamma"} <= set(config.from_recipe)
    doubled = _paper_settings("densenet_bc_100", batch_size=2 * densenet.batch_size)
    assert doubled.lr == pytest.approx(2 * densenet.lr) and "batch_size" not in doubled.from_recipe
    # A default recipe names no batch: its rate stays the one at 128, and 128 is the batch.
    default = apply_recipe(TrainConfig(model="densenet_bc_100"))
    assert default.batch_size == 128 and default.lr == pytest.approx(recipe_of("densenet_bc_100").lr)
    halved = apply_recipe(TrainConfig(model="densenet_bc_100", batch_size=64))
    assert halved.lr == pytest.approx(recipe_of("densenet_bc_100").lr / 2)


def test_flags_win_over_the_paper_recipe():
    config = _paper_settings("resnet20", lr=0.05, gamma=0.5, milestones=[0.3], optimizer="nesterov", epochs=3)
    assert (config.lr, config.gamma, config.milestones, config.optimizer) == (0.05, 0.5, [0.3], "nesterov")
    assert not {"lr", "gamma", "milestones", "optimizer"} & set(config.from_recipe)
    assert config.weight_decay == recipe_of("resnet20", paper=True).weight_decay
    assert _epochs(config, 1, []) == 3


def test_a_paper_recipes_epochs_are_the_papers_whatever_min_steps():
    notes: list[str] = []
    assert _epochs(TrainConfig(model="resnet20", recipe="paper"), 1, notes) == 164 and not notes
    control = apply_recipe(TrainConfig(model="resnet20"))
    assert _epochs(control, 1, []) == recipe_of("resnet20").min_steps  # the control


def test_recipe_paper_on_a_model_without_one_is_one_line(capsys):
    for name in ("knn", "linear", "simple_cnn", "vgg11_bn"):
        with pytest.raises(CnnlabError, match=f"{name} has no paper recipe"):
            apply_recipe(TrainConfig(model=name, recipe="paper"))
    assert cli.main(["train", "--model", "simple_cnn", "--recipe", "paper", "--out", "never"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no paper recipe" in err and "Traceback" not in err


def test_a_bad_schedule_flag_is_one_line():
    for flags, needle in (
        ({"milestones": [0.75, 0.5]}, "--milestones"),
        ({"milestones": [1.5]}, "--milestones"),
        ({"gamma": 0.0}, "--gamma"),
        ({"schedule": "exponential"}, "--decay-every"),
        ({"recipe": "papers"}, "--recipe"),
    ):
        with pytest.raises(CnnlabError, match=needle):
            apply_recipe(TrainConfig(model="resnet20", **flags))


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_every_paper_recipe_documents_itself_and_applies(name):
    recipe = recipe_of(name, paper=True)
    assert recipe.data in (*data.list_datasets(), "imagenet")
    assert recipe.source and (recipe.reports or recipe.notes)
    assert recipe.label_smoothing == 0.0 or name.startswith("efficientnet")  # no 2012-2017 paper smooths
    config = apply_recipe(TrainConfig(model=name, recipe="paper"))
    assert config.batch_size == recipe.batch and config.lr == pytest.approx(recipe.lr, rel=1e-15)


def test_paper_recipes_cover_the_families_and_not_the_baselines():
    families = {recipe_of(n, paper=True).source.split(",")[0] for n in PAPER_MODELS}  # type: ignore[union-attr]
    assert {"He et al. 2016", "Hu et al. 2018", "Huang et al. 2017", "Tan and Le 2019"} <= families
    assert {"Simonyan and Zisserman 2015", "Szegedy et al. 2015", "Krizhevsky et al. 2012"} <= families
    assert not {"knn", "linear", "simple_cnn", "alexnet"} & set(PAPER_MODELS)


def test_cnnlab_models_shows_the_paper_recipe(capsys):
    row = describe_models("resnet110")[0]
    assert row["paper_recipe"]["warmup_factor"] == 0.1 and row["recipe"] == dataclasses.asdict(
        recipe_of("resnet110")
    )
    assert cli.main(["models", "resnet110"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "paper recipe (`--recipe paper`)" in out and "--lr 0.1 (at batch 128)" in out
    assert "--milestones 0.5 0.75" in out and "Table 6" in out
    assert cli.main(["models", "knn"]) == 0 and "no paper recipe" in capsys.readouterr().out


def test_the_recipe_fields_that_describe_it_fill_no_setting():
    assert set(ABOUT) <= {f.name for f in dataclasses.fields(Recipe)} and not set(ABOUT) & set(FIELDS)
    config = apply_recipe(TrainConfig(model="resnet20", recipe="paper"))
    assert config.data == "mnist5k"  # the paper's cifar10 documents the recipe; --data chooses
    assert DEFAULT.batch == 128 and Recipe(batch_size=64).batch == 64


@pytest.mark.slow
def test_config_json_records_the_paper_recipe(tiny_digits, tmp_path):
    import json

    from cnnlab.train import fit

    out = tmp_path / "run"
    fit(TrainConfig(model="resnet20", data=str(tiny_digits), recipe="paper", epochs=1, batch_size=30,
                    precision="fp32", out=str(out)), quiet=True)  # fmt: skip
    train = json.loads((out / "config.json").read_text())["train"]
    paper = recipe_of("resnet20", paper=True)
    assert train["recipe"] == "paper" and train["weight_decay"] == paper.weight_decay
    assert train["schedule"] == "step" and train["milestones"] == list(paper.milestones)
    assert train["lr"] == pytest.approx(paper.lr * 30 / paper.batch)  # --batch-size 30 scales the paper's
