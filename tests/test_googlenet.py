"""GoogLeNet: counts with and without the auxiliary heads, torchvision's names, the Table 1 widths,
train/eval outputs, the trainer's auxiliary loss, the minimum input, init."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import meta_model
from torch import nn

import cnnlab
from cnnlab.errors import InputSizeError
from cnnlab.loss import classification_loss
from cnnlab.models.googlenet import INCEPTION_TABLE, GoogLeNet, Inception

FIXTURES = Path(__file__).parent / "fixtures"


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def model() -> GoogLeNet:
    """One real model for the tests that run it (building one takes seconds on a busy CPU)."""
    torch.manual_seed(0)
    return cnnlab.create_model("googlenet", num_classes=7, in_chans=1)


def test_params_equal_torchvision_with_and_without_aux_heads():
    assert count(meta_model("googlenet")) == 13_004_888
    assert count(meta_model("googlenet", aux_logits=False)) == 6_624_904


def test_state_dict_names_and_shapes_match_torchvision():
    reference = json.loads((FIXTURES / "tv_googlenet_keys.json").read_text())
    assert {k: list(v.shape) for k, v in meta_model("googlenet").state_dict().items()} == reference
    without = {k: list(v.shape) for k, v in meta_model("googlenet", aux_logits=False).state_dict().items()}
    assert without == {k: v for k, v in reference.items() if not k.startswith("aux")}


def test_inception_output_channels_follow_table_1(model):
    expected = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832}
    expected["5b"] = 1024
    assert list(model.inceptions) == list(INCEPTION_TABLE)
    seen: dict[str, int] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape[1]))
        for name, module in model.inceptions.items()
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(2, 1, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == expected
    assert {name: m.out_channels for name, m in model.inceptions.items()} == expected


def test_inception_branches_reduce_before_3x3_and_5x5_and_project_after_pool():
    block = Inception(192, *INCEPTION_TABLE["3a"])
    assert block.branch2[0].conv.out_channels == 96 and block.branch2[0].conv.kernel_size == (1, 1)
    assert block.branch3[0].conv.out_channels == 16 and block.branch3[0].conv.kernel_size == (1, 1)
    assert isinstance(block.branch4[0], nn.MaxPool2d) and block.branch4[1].conv.out_channels == 32
    # torchvision's quirk, kept for its checkpoints: the "5x5" branch is a 3x3 conv.
    assert block.branch3[1].conv.kernel_size == (3, 3)
    assert block.branch1.bn.eps == 0.001


@pytest.mark.parametrize("size", [15, 28])
def test_train_mode_returns_main_and_two_aux_eval_mode_one_tensor(model, size):
    x = torch.randn(3, 1, size, size)
    with torch.no_grad():
        outputs = model.train()(x)
    assert isinstance(outputs, tuple) and len(outputs) == 3
    assert all(o.shape == (3, 7) and torch.isfinite(o).all() for o in outputs)
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 7)


def test_without_aux_heads_train_mode_returns_one_tensor():
    model = cnnlab.create_model("googlenet", num_classes=5, aux_logits=False).train()
    assert not hasattr(model, "aux1")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 15, 15))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)


def test_trainer_adds_three_tenths_of_each_aux_loss_and_gradients_reach_the_heads(model):
    y = torch.tensor([0, 3, 6, 1])
    model.zero_grad(set_to_none=True)
    main, aux1, aux2 = outputs = model.train()(torch.randn(4, 1, 15, 15))
    loss, logits = classification_loss(outputs, y, label_smoothing=0.0)
    expected = F.cross_entropy(main, y) + 0.3 * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
    assert logits is main
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() != pytest.approx(F.cross_entropy(main, y).item(), rel=1e-3)
    loss.backward()
    assert model.aux1.fc2.weight.grad.abs().sum() > 0 and model.aux2.fc2.weight.grad.abs().sum() > 0


def test_minimum_input_is_the_same_in_train_and_eval_mode_and_tight(model):
    assert model.min_input_size == 15
    with pytest.raises(InputSizeError, match="at least 15x15"):
        model(torch.randn(2, 1, 14, 14))
    x = torch.randn(2, 1, 14, 14)
    for train in (True, False):
        model.train(train)
        # 15x15 works in both modes (the test above runs it); forward() skips the registry's
        # check, so at 14x14 PyTorch itself fails: the minimum is not over-cautious.
        with torch.no_grad(), pytest.raises(RuntimeError):
            model.forward(x)


def test_dropout_choice_and_initialization():
    torch.manual_seed(0)
    model = cnnlab.create_model("googlenet", num_classes=100)
    assert model.dropout.p == 0.2 and model.aux1.dropout.p == 0.7
    assert meta_model("googlenet", dropout=0.4, aux_logits=False).dropout.p == 0.4
    w = model.inception4e.branch2[1].conv.weight  # 160 -> 320, 3x3: plenty of samples
    assert w.std().item() == pytest.approx(0.01, rel=0.02)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.equal(model.conv1.bn.weight, torch.ones(64)) and not model.conv1.bn.bias.any()
