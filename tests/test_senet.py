"""Squeeze-and-Excitation: the block itself, and the SE-ResNets against timm's counts and names."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.layers import SEBlock, make_divisible
from cnnlab.models import num_params

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("se_resnet18", 11_779_624),
        ("se_resnet34", 21_960_416),
        ("se_resnet50", 28_088_024),
        ("se_resnet101", 49_326_872),
        ("se_resnet152", 66_821_848),
    ],
)
def test_se_resnet_params_equal_timm(name, params):
    assert num_params(name) == params


@pytest.mark.parametrize(("depth", "params"), [(20, 275_506), (56, 870_370), (110, 1_762_666)])
def test_cifar_se_resnet_adds_only_the_se_weights(depth, params):
    # Every block has SE on C channels with a reduced width w: 2*C*w + w + C weights each.
    n = (depth - 2) // 6
    extra = sum(
        n * (2 * c * make_divisible(c / 16, round_limit=0.0) + make_divisible(c / 16, round_limit=0.0) + c)
        for c in (16, 32, 64)
    )
    assert num_params(f"resnet{depth}", num_classes=10) + extra == params
    assert num_params(f"se_resnet{depth}", num_classes=10) == params


def test_se_resnet18_names_and_shapes_equal_timm():
    reference = json.loads((FIXTURES / "timm_seresnet18_keys.json").read_text())
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in cnnlab.create_model("se_resnet18").state_dict().items()}
    assert ours == reference


def test_se_block_squeezes_excites_and_rescales():
    torch.manual_seed(0)
    se = SEBlock(32, reduction=16)
    assert se.fc1.out_channels == 2 and se.fc2.out_channels == 32
    x = torch.randn(3, 32, 5, 7)
    pooled = x.mean((2, 3))  # squeeze: global average pooling
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    gate = torch.sigmoid(torch.relu(pooled @ w1.T + b1) @ w2.T + b2)  # FC-ReLU-FC-sigmoid
    assert torch.allclose(se.gate(x).flatten(1), gate, atol=1e-6)
    assert torch.allclose(se(x), x * gate[:, :, None, None], atol=1e-6)
    assert ((gate > 0) & (gate < 1)).all()


def test_se_gate_ignores_where_a_channel_is_active():
    # The gate sees each channel's mean only: moving activity within a channel changes nothing.
    se = SEBlock(8, reduction=4)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(se.gate(x), se.gate(x.flip(-1).roll(2, dims=-2)), atol=1e-6)


def test_se_block_fits_any_model():
    model = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), SEBlock(24, reduction=8), nn.AdaptiveAvgPool2d(1))
    assert model(torch.randn(2, 3, 9, 9)).shape == (2, 24, 1, 1)


def test_se_width_rounds_like_timm():  # C/r to a multiple of 8, at least 8
    assert [make_divisible(c / 16, round_limit=0.0) for c in (16, 64, 128, 256, 2048)] == [8, 8, 8, 16, 128]


def test_se_resnet_has_se_in_every_block_before_the_addition():
    model = cnnlab.create_model("se_resnet20", num_classes=10).eval()
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 9 and all(isinstance(b.se, SEBlock) for b in blocks)
    block, x = blocks[0], torch.randn(2, 16, 8, 8)
    assert torch.allclose(block(x), torch.relu(block.se(block.branch(x)) + x), atol=1e-6)
