"""Recipes: each model's training defaults, filled into what the user left unset, and reaching torch's
optimizers."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import pytest
import torch

from cnnlab.data.augment import Normalize, plan_epoch
from cnnlab.data.base import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models, paper_recipe_of, recipe_of, registry
from cnnlab.models.recipe import DEFAULT, FIELDS, OPTIMIZERS, Recipe
from cnnlab.train import TrainConfig
from cnnlab.train.config import apply_recipe
from cnnlab.train.epoch import Optimization, train_epoch
from cnnlab.train.progress import TrainProgress
from cnnlab.train.schedule import ema_update, make_optimizer


def _step(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    optimizer.zero_grad()
    model(torch.randn(4, 1, 28, 28)).logsumexp(1).mean().backward()
    optimizer.step()


@pytest.mark.parametrize("recipe", sorted({recipe_of(n) for n in list_models()}, key=repr) + [
    dataclasses.replace(DEFAULT, optimizer=o, decay_norm_and_bias=False) for o in OPTIMIZERS
] + sorted({paper_recipe_of(n) for n in list_models()} - {None}, key=repr),
    ids=lambda r: f"{r.optimizer}-{r.schedule}-{r.lr:g}-{r.source or 'cnnlab'}")  # fmt: skip
def test_every_recipe_builds_its_optimizer_and_takes_a_step(recipe, monkeypatch):
    monkeypatch.setattr("cnnlab.train.config.recipe_of", lambda name: recipe)
    settings = apply_recipe(TrainConfig(model="simple_cnn"))
    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=10, in_chans=1)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer, scheduler = make_optimizer(model, settings, total_steps=10, warmup_steps=1)
    _step(optimizer, model)
    scheduler.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_recipes_fields_reach_the_optimizer(monkeypatch):
    recipe = Recipe(optimizer="adamw", lr=0.004, momentum=0.8, weight_decay=0.05, decay_norm_and_bias=False)
    monkeypatch.setattr("cnnlab.train.config.recipe_of", lambda name: recipe)
    settings = apply_recipe(TrainConfig(model="resnet20", batch_size=64))
    model = create_model("resnet20", num_classes=10, in_chans=1)
    optimizer, _ = make_optimizer(model, settings, total_steps=10, warmup_steps=0)
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {g["weight_decay"]: g for g in optimizer.param_groups}
    assert set(groups) == {0.05, 0.0} and all(g["betas"] == (0.8, 0.999) for g in groups.values())
    assert all(g["lr"] == pytest.approx(0.002) for g in groups.values())  # 0.004 at 128, halved
    bn = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    undecayed = {id(p) for p in groups[0.0]["params"]}
    assert bn <= undecayed and all(p.dim() == 1 for p in groups[0.0]["params"])
    assert all(p.dim() > 1 for p in groups[0.05]["params"])


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_sgd_and_adamw_take_torchs_fused_step_on_the_cpu_with_the_loops_weights(kind, monkeypatch):
    """The fused step (one pass over each parameter) is what the trainer runs on the CPU; it moves the
    weights as torch's default loop over the parameters does: bit for bit for plain SGD, within float32
    rounding for Nesterov's and AdamW. RMSprop has no fused step in torch and keeps the loop."""
    recipe = dataclasses.replace(DEFAULT, optimizer=kind, decay_norm_and_bias=False)
    monkeypatch.setattr("cnnlab.train.config.recipe_of", lambda name: recipe)
    settings = apply_recipe(TrainConfig(model="simple_cnn"))
    weights = []
    for fused in (True, None):
        monkeypatch.setattr("cnnlab.train.schedule.fused_optimizer", lambda device, fused=fused: fused)
        torch.manual_seed(0)
        model = create_model("simple_cnn", num_classes=10, in_chans=1)
        optimizer, _ = make_optimizer(model, settings, total_steps=10, warmup_steps=0)
        assert optimizer.defaults.get("fused") is (fused if kind != "rmsprop" else None)
        torch.manual_seed(1)
        for _ in range(3):
            _step(optimizer, model)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    if kind in ("sgd", "rmsprop"):
        assert torch.equal(weights[0], weights[1])
    else:
        torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)


def test_the_trainer_fuses_the_step_on_the_cpu_only():
    from cnnlab.runtime import fused_optimizer

    assert fused_optimizer(torch.device("cpu")) is True
    assert fused_optimizer(torch.device("cuda")) is None  # torch's own choice where it was not measured


def test_a_flag_wins_and_config_says_which_fields_the_recipe_set():
    config = apply_recipe(TrainConfig(model="resnet20", lr=0.05, optimizer="nesterov"))
    assert (config.lr, config.optimizer) == (0.05, "nesterov")  # a given --lr is not rescaled
    unset = {
        "clip_grad_norm",
        "ema_decay",
        "batch_size",
        "decay_every",
        "warmup_factor",
        "aux_weight",
        "mixup",
        "cutmix",
    }  # None in it
    assert set(config.from_recipe) == set(FIELDS) - {"lr", "optimizer"} - unset
    assert config.momentum == recipe_of("resnet20").momentum
    filled = list(config.from_recipe)
    assert apply_recipe(config).from_recipe == filled  # applied twice: nothing left unset, nothing added


def test_a_variants_own_recipe_wins_over_its_familys(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # the registrations are undone after
    family, own = Recipe(optimizer="nesterov"), Recipe(optimizer="rmsprop", lr=0.016)
    monkeypatch.setattr(sys.modules[__name__], "RECIPE", family, raising=False)  # this module's family

    @registry.register
    def cnn_of_the_family(**kwargs):
        return create_model("simple_cnn", **kwargs)

    @registry.register(recipe=own)
    def cnn_of_its_own(**kwargs):
        return create_model("simple_cnn", **kwargs)

    assert recipe_of("cnn_of_the_family") is family and recipe_of("cnn_of_its_own") is own
    assert recipe_of("resnet20") is DEFAULT  # a family that sets none


def test_a_recipes_model_args_reach_the_builder_and_a_model_arg_wins_per_key(monkeypatch):
    recipe = Recipe(model_args={"dropout": 0.1, "init": "kaiming"})
    assert recipe.model_args == (("dropout", 0.1), ("init", "kaiming"))  # hashable, in one order
    monkeypatch.setattr("cnnlab.train.config.recipe_of", lambda name, paper=False: recipe)
    config = apply_recipe(TrainConfig(model="alexnet", model_kwargs={"dropout": 0.3}))
    assert config.model_kwargs == {"dropout": 0.3, "init": "kaiming"} and "model_args" in config.from_recipe
    given = apply_recipe(TrainConfig(model="alexnet", model_kwargs={"dropout": 0.3, "init": "torch"}))
    assert given.model_kwargs == {"dropout": 0.3, "init": "torch"} and "model_args" not in given.from_recipe
    model = create_model("alexnet", num_classes=10, **config.model_kwargs)
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]


@pytest.mark.parametrize("name", [n for n in list_models() if recipe_of(n).model_args])
def test_every_recipes_model_args_are_options_its_model_takes(name):
    with torch.device("meta"):
        create_model(name, num_classes=10, **dict(recipe_of(name).model_args))
    with torch.device("meta"), pytest.raises(CnnlabError):  # the control: an option no builder takes
        create_model(name, num_classes=10, **dict(recipe_of(name).model_args), not_an_option=1)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_the_aux_weight_is_each_auxiliary_heads_share_of_the_loss(weight):
    from cnnlab.loss import classification_loss

    g = torch.Generator().manual_seed(0)
    main, aux1, aux2 = (torch.randn(6, 4, generator=g) for _ in range(3))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loss, logits = classification_loss((main, aux1, aux2), y, 0.0, weight)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(loss, ce(main, y) + weight * (ce(aux1, y) + ce(aux2, y)))
    assert logits is main


def test_a_recipes_image_size_resizes_smaller_data_with_a_note(tiny_digits, monkeypatch):
    from cnnlab.train.inputs import load_data as _load_data

    monkeypatch.setattr("cnnlab.train.inputs.recipe_of", lambda name, paper=False: Recipe(image_size=36))
    config = TrainConfig(model="simple_cnn", data=str(tiny_digits))
    data, notes, resized_up = _load_data(config)
    assert data.image_size == (40, 40) and config.image_size == 40 and resized_up  # 36 rounded up to 8s
    assert len(notes) == 1 and "resized to 40x40" in notes[0] and "image_size" in config.from_recipe
    given = TrainConfig(model="simple_cnn", data=str(tiny_digits), image_size=28)
    assert _load_data(given)[0].image_size == (28, 28)  # an explicit --image-size wins
    monkeypatch.setattr("cnnlab.train.inputs.recipe_of", lambda name, paper=False: Recipe(image_size=28))
    assert _load_data(TrainConfig(model="simple_cnn", data=str(tiny_digits)))[1:] == (
        [],
        False,
    )  # large enough


def test_a_recipes_min_steps_sets_the_epochs_of_a_small_dataset(monkeypatch):
    from cnnlab.train.inputs import plan_epochs as _epochs

    monkeypatch.setattr(
        "cnnlab.train.config.recipe_of", lambda name, paper=False: Recipe(epochs=4, min_steps=100)
    )
    monkeypatch.setattr(
        "cnnlab.train.inputs.recipe_of", lambda name, paper=False: Recipe(epochs=4, min_steps=100)
    )
    config = apply_recipe(TrainConfig(model="resnet20"))
    assert config.min_steps == 100 and _epochs(config, 31, []) == 4  # 124 steps: enough
    assert _epochs(config, 10, []) == 10
    assert _epochs(apply_recipe(TrainConfig(model="resnet20", min_steps=200)), 31, []) == 7  # the flag wins


@pytest.mark.parametrize("family_paper", ["one", "by_name"])
def test_a_variants_own_paper_recipe_wins_over_its_familys(monkeypatch, family_paper):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    family, own = Recipe(optimizer="nesterov", source="family"), Recipe(optimizer="rmsprop", source="own")
    table = family if family_paper == "one" else {"cnn_of_the_paper": family}
    monkeypatch.setattr(sys.modules[__name__], "PAPER_RECIPE", table, raising=False)

    @registry.register
    def cnn_of_the_paper(**kwargs):
        return create_model("simple_cnn", **kwargs)

    @registry.register(paper=own)
    def cnn_of_its_own_paper(**kwargs):
        return create_model("simple_cnn", **kwargs)

    assert recipe_of("cnn_of_the_paper", paper=True) is family
    assert recipe_of("cnn_of_its_own_paper", paper=True) is own
    assert recipe_of("cnn_of_the_paper") is DEFAULT  # the default recipe is untouched
    assert paper_recipe_of("simple_cnn") is None


def _one_batch_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(8) % 2
    return Dataset("toy", images, labels, images, labels, classes=["a", "b"], hflip=False)


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_clip_grad_norm_bounds_the_gradients_of_a_step(clip):
    data = _one_batch_dataset()
    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=2, in_chans=1)
    settings = apply_recipe(TrainConfig(model="simple_cnn", clip_grad_norm=clip))
    optimizer, scheduler = make_optimizer(model, settings, total_steps=1, warmup_steps=0)
    opt = Optimization(optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), 0.1, clip)
    with TrainProgress(1, live=False, quiet=True) as progress:
        train_epoch(model, data, plan_epoch(8, 0, 1, 0, False), Normalize(data.mean, data.std), opt, 8, 0.0,
                    torch.device("cpu"), None, progress, 1)  # fmt: skip
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm <= 1.001e-3 if clip else norm > 1e-2  # the control: unclipped, far larger


@pytest.mark.parametrize("warmed", [True, False])
def test_the_weights_average_warms_its_decay_up_from_the_first_update(warmed):
    """After the s-th step the decay is min(0.99, (1 + s) / (10 + s)), the first step's weights copied;
    torch's own average (the control) keeps 0.99 from the start, and so a share of the first weights."""
    model = torch.nn.Linear(1, 1, bias=False)
    update = ema_update(0.99) if warmed else torch.optim.swa_utils.get_ema_multi_avg_fn(0.99)
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    expected = 0.0
    for step in range(1, 31):  # the weights after step s are s
        with torch.no_grad():
            model.weight.fill_(float(step))
        ema.update_parameters(model)
        decay = min(0.99, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * step if step > 1 else 1.0
    assert math.isclose(ema.module.weight.item(), expected, rel_tol=1e-5) == warmed


@pytest.mark.slow
def test_config_json_records_the_resolved_recipe(trained_run):
    train = json.loads((trained_run / "config.json").read_text())["train"]
    assert train["optimizer"] == "sgd" and train["lr"] == pytest.approx(0.1)
    assert set(train["from_recipe"]) == {f for f in FIELDS if getattr(recipe_of("resnet20"), f) is not None}


def _train(tiny_digits, out, model="simple_cnn", **overrides):
    from cnnlab.train import fit

    config = TrainConfig(model=model, data=str(tiny_digits), epochs=2, batch_size=30, precision="fp32",
                         out=str(out), **overrides)  # fmt: skip
    return fit(config, quiet=True)


def interrupted_at_epoch_2(epoch_step):
    """The training loop's epoch, stopped as a kill would stop it: after the first epoch's checkpoint."""

    def interrupted(s, epoch, progress):
        if epoch == 2:
            raise KeyboardInterrupt
        return epoch_step(s, epoch, progress)

    return interrupted


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_resume_is_bit_identical_with_every_optimizer_and_ema(tiny_digits, tmp_path, monkeypatch, optimizer):
    import cnnlab.train.loop as loop
    from cnnlab.rundir import load_checkpoint, load_weights
    from cnnlab.train import resume

    lr = 0.01 if optimizer in ("adamw", "rmsprop") else None
    _train(tiny_digits, tmp_path / "whole", optimizer=optimizer, lr=lr, ema_decay=0.9)
    real = loop._epoch
    monkeypatch.setattr(loop, "_epoch", interrupted_at_epoch_2(real))
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_digits, tmp_path / "cut", optimizer=optimizer, lr=lr, ema_decay=0.9)
    monkeypatch.setattr(loop, "_epoch", real)
    resume(tmp_path / "cut", quiet=True)

    whole, cut = (
        load_weights(tmp_path / "whole" / "model.safetensors"),
        load_weights(tmp_path / "cut" / "model.safetensors"),
    )
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    # What was saved is the average, not the raw weights of the last step.
    raw = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    assert any(not torch.equal(whole[k], raw[k]) for k in whole if k in raw and whole[k].is_floating_point())
    ema = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["ema"]
    assert all(torch.equal(whole[k], ema[f"module.{k}"]) for k in whole)


@pytest.mark.slow
def test_a_run_from_before_recipes_resumes_with_its_own_settings(tiny_digits, tmp_path, monkeypatch):
    """linear's recipe is AdamW now; a run that trained it with SGD before recipes existed, whose
    config.json has no optimizer, must resume with SGD and end as the uninterrupted run."""
    import cnnlab.train.loop as loop
    from cnnlab.rundir import load_weights
    from cnnlab.train import resume

    before = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
              "warmup_epochs": 1.0, "label_smoothing": 0.1}  # fmt: skip
    _train(tiny_digits, tmp_path / "whole", "linear", **before)
    real = loop._epoch
    monkeypatch.setattr(loop, "_epoch", interrupted_at_epoch_2(real))
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_digits, tmp_path / "cut", "linear", **before)
    monkeypatch.setattr(loop, "_epoch", real)
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    for new in ("optimizer", "decay_norm_and_bias", "clip_grad_norm", "ema_decay", "from_recipe", "hflip",
                "recipe", "milestones", "gamma", "decay_every", "warmup_factor"):  # fmt: skip
        del config["train"][new]  # as the trainer wrote config.json before recipes
    (tmp_path / "cut" / "config.json").write_text(json.dumps(config))
    resume(tmp_path / "cut", quiet=True)
    whole = load_weights(tmp_path / "whole" / "model.safetensors")
    cut = load_weights(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
