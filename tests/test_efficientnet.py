"""EfficientNet family: exact parameter counts (meta device), torchvision names, shapes, the MBConv
block, stochastic depth, per-variant BatchNorm, and compound scaling."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import meta_model
from torch import nn

import cnnlab
from cnnlab.errors import InputSizeError
from cnnlab.layers import DropPath, SEBlock, make_divisible
from cnnlab.models.efficientnet import MBConv, compound_scaling

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = [f"efficientnet_b{i}" for i in range(8)]
# As released (and in torchvision): (width, depth, resolution, dropout) per variant.
RELEASED = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}


@pytest.mark.parametrize(
    ("name", "params"),
    [  # torchvision's counts (the reference tool, tv:efficientnet_b0 ...)
        ("efficientnet_b0", 5_288_548),
        ("efficientnet_b1", 7_794_184),
        ("efficientnet_b2", 9_109_994),
        ("efficientnet_b3", 12_233_232),
        ("efficientnet_b4", 19_341_616),
        ("efficientnet_b5", 30_389_784),
        ("efficientnet_b6", 43_040_704),
        ("efficientnet_b7", 66_347_960),
    ],
)
def test_params_equal_torchvision(name, params):
    assert sum(p.numel() for p in meta_model(name).parameters()) == params


def test_state_dict_names_and_shapes_match_torchvision():
    reference = json.loads((FIXTURES / "tv_efficientnet_b0_keys.json").read_text())
    ours = {k: list(v.shape) for k, v in meta_model("efficientnet_b0").state_dict().items()}
    assert ours == reference


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_numbers_and_default_input_size(name):
    width, depth, resolution, dropout = RELEASED[name]
    model = meta_model(name, in_chans=1)
    assert (model.width_mult, model.depth_mult, model.resolution) == (width, depth, resolution)
    assert model.default_input_size == (1, resolution, resolution)
    assert model.classifier[0].p == dropout
    # Depth: each of B0's stage repeats times the multiplier, rounded up.
    assert model.stage_depths == [math.ceil(n * depth) for n in (1, 2, 2, 3, 3, 4, 1)]
    assert model.features[-1][0].out_channels == make_divisible(1280 * width)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b3", "efficientnet_b7"])
def test_forward_shapes_at_minimum_and_small_size(name):
    model = cnnlab.create_model(name, num_classes=7, in_chans=1).eval()
    assert model.min_input_size == 32
    with torch.no_grad():
        for size in (32, 37):
            out = model(torch.randn(2, 1, size, size))
            assert out.shape == (2, 7)
            assert torch.isfinite(out).all()
        # Every conv is padded: 32 pixels, the total stride, leave a 1x1 map at the head.
        assert model.features(torch.randn(1, 1, 32, 32)).shape[-2:] == (1, 1)
        assert model.features(torch.randn(1, 1, 64, 96)).shape[-2:] == (2, 3)  # total stride 32


def test_input_size_errors():
    model = cnnlab.create_model("efficientnet_b0", num_classes=7, in_chans=1)
    with pytest.raises(InputSizeError, match="at least 32x32"):
        model(torch.randn(1, 1, 31, 31))
    with pytest.raises(InputSizeError, match="1-channel"):
        model(torch.randn(1, 3, 32, 32))


def test_make_divisible_rounds_to_eight_but_not_below_ninety_percent():
    assert make_divisible(32 * 1.1) == 32  # 35.2: nearest multiple of 8 is 32, within 10%
    assert make_divisible(40 * 1.1) == 48  # 44 is halfway: rounds up
    assert make_divisible(16 * 1.8) == 32  # 28.8 -> 32
    assert make_divisible(11) == 16  # nearest is 8, but 8 < 0.9 * 11: one step up
    assert make_divisible(3) == 8  # never below the divisor
    assert all(make_divisible(v) % 8 == 0 and make_divisible(v) >= 0.9 * v for v in range(1, 2000))


def test_mbconv_layout_in_b0():
    model = cnnlab.create_model("efficientnet_b0")
    first = model.features[1][0]  # MBConv1, k3: no expansion conv
    assert len(first.block) == 3
    assert first.block[0][0].groups == 32 and first.block[0][0].kernel_size == (3, 3)
    block = model.features[3][0]  # MBConv6, k5, stride 2, 24 -> 40
    expand, depthwise, se, project = block.block
    assert expand[0].out_channels == 144 and isinstance(expand[2], nn.SiLU)
    assert depthwise[0].groups == 144 and depthwise[0].kernel_size == (5, 5) and depthwise[0].stride == (2, 2)
    assert isinstance(se, SEBlock) and se.fc1.out_channels == 24 // 4  # a quarter of the block INPUT
    assert isinstance(se.act, nn.SiLU)
    assert len(project) == 2 and project[0].out_channels == 40  # linear projection: no activation
    assert not block.use_residual and model.features[3][1].use_residual
    assert isinstance(model.features[0][2], nn.SiLU) and isinstance(model.features[8][2], nn.SiLU)


def test_residual_with_stochastic_depth_drops_whole_samples():
    torch.manual_seed(0)
    block = MBConv(16, 16, expand_ratio=6, kernel_size=3, stride=1, drop_path=0.5).train()
    x = torch.randn(64, 16, 4, 4)
    with torch.no_grad():
        out = block(x)
        branch = block.block(x)  # BN in training mode: batch statistics, the same on both calls
    dropped = (out == x).flatten(1).all(1)
    assert 10 < dropped.sum() < 54  # about half the samples keep only the identity
    kept = ~dropped
    assert torch.allclose(out[kept], x[kept] + branch[kept] / 0.5, atol=1e-5)  # survivors rescaled
    block.eval()
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.block(x))  # the identity at evaluation


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b7"])
def test_drop_path_rate_grows_linearly_over_all_blocks(name):
    model = meta_model(name)
    rates = [m.p for m in model.modules() if isinstance(m, DropPath)]
    n = sum(model.stage_depths)
    assert len(rates) == n
    assert rates == pytest.approx([0.2 * i / n for i in range(n)])  # last: survival 0.8 + 0.2 / n


@pytest.mark.parametrize(
    ("name", "eps", "momentum"),
    [("efficientnet_b0", 1e-5, 0.1), ("efficientnet_b4", 1e-5, 0.1), ("efficientnet_b5", 1e-3, 0.01)],
)
def test_batchnorm_settings_follow_torchvision_per_variant(name, eps, momentum):
    norms = [m for m in meta_model(name).modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in norms} == {(eps, momentum)}


def test_compound_coefficients_double_the_flops_per_step():
    alpha, beta, gamma = 1.2, 1.1, 1.15
    assert alpha * beta**2 * gamma**2 == pytest.approx(1.92, abs=0.005)
    depth, width, resolution = compound_scaling(3)
    assert (depth, width, resolution) == pytest.approx((1.728, 1.331, 1.520875))
    assert depth * width**2 * resolution**2 == pytest.approx(1.92**3, rel=1e-3)


# The exact powers (taking phi = the variant's number) next to the released, rounded table.
#                 phi: alpha**phi, beta**phi, 224 * gamma**phi  vs  released depth, width, resolution
EXACT_VS_RELEASED = {
    1: ((1.2000, 1.1000, 257.60), (1.1, 1.0, 240)),
    2: ((1.4400, 1.2100, 296.24), (1.2, 1.1, 260)),
    3: ((1.7280, 1.3310, 340.68), (1.4, 1.2, 300)),
    4: ((2.0736, 1.4641, 391.78), (1.8, 1.4, 380)),
    5: ((2.4883, 1.6105, 450.54), (2.2, 1.6, 456)),
    6: ((2.9860, 1.7716, 518.13), (2.6, 1.8, 528)),
    7: ((3.5832, 1.9487, 595.84), (3.1, 2.0, 600)),
}


@pytest.mark.parametrize("phi", range(1, 8))
def test_released_variants_use_the_rounded_table_not_the_exact_powers(phi):
    exact, released = EXACT_VS_RELEASED[phi]
    depth, width, resolution = compound_scaling(phi)
    assert (depth, width, 224 * resolution) == pytest.approx(exact, abs=0.006)
    model = meta_model(f"efficientnet_b{phi}")
    assert (model.depth_mult, model.width_mult, model.resolution) == released
    assert model.depth_mult < depth  # the released depths grow more slowly than alpha**phi


def test_torchvision_initialization():
    torch.manual_seed(0)
    model = cnnlab.create_model("efficientnet_b0", num_classes=10)
    w = model.features[6][0].block[0][0].weight  # 1x1 expand 112 -> 672, fan-out = 672
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / 672), rel=0.03)
    fc = model.classifier[1]
    bound = 1 / math.sqrt(10)
    assert fc.weight.abs().max() <= bound and fc.weight.abs().max() > 0.9 * bound and not fc.bias.any()
    se = model.features[2][0].block[2]
    assert not se.fc1.bias.any() and not se.fc2.bias.any()


def test_an_option_given_wins_over_the_variants_own():
    model = cnnlab.create_model("efficientnet_b3", num_classes=10, dropout=0.1)  # the variant's is 0.3
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.1]


def test_zero_init_residual_starts_each_residual_block_as_the_identity():
    from cnnlab.models.efficientnet import MBConv

    torch.manual_seed(0)
    for zero, identity in ((True, True), (False, False)):  # False: the control
        model = cnnlab.create_model("efficientnet_b0", zero_init_residual=zero).eval()
        blocks = [m for m in model.modules() if isinstance(m, MBConv) and m.use_residual]
        assert len(blocks) == 9  # B0's 16 blocks less the first of each of its 7 stages
        x = torch.randn(2, blocks[0].block[0][0].in_channels, 8, 8)
        with torch.no_grad():
            assert torch.equal(blocks[0](x), x) == identity
