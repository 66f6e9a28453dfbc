"""VGG family: exact parameter counts, torchvision's names, Table 1 depths, minimum input, init."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import meta_model
from torch import nn

import cnnlab
from cnnlab.errors import InputSizeError

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = ["vgg11", "vgg13", "vgg16", "vgg19"]


@pytest.fixture(scope="module")
def small_models() -> dict[str, nn.Module]:
    """Real vgg11 and vgg11_bn, 1 channel and 7 classes, built once (each takes seconds)."""
    torch.manual_seed(0)
    return {
        name: cnnlab.create_model(name, num_classes=7, in_chans=1).eval() for name in ("vgg11", "vgg11_bn")
    }


@pytest.mark.parametrize(
    ("name", "params"),
    [  # torchvision 0.28 (reference tool), 1000 classes, 3 channels
        ("vgg11", 132_863_336),
        ("vgg13", 133_047_848),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
        ("vgg11_bn", 132_868_840),
        ("vgg13_bn", 133_053_736),
        ("vgg16_bn", 138_365_992),
        ("vgg19_bn", 143_678_248),
    ],
)
def test_params_equal_torchvision(name, params):
    assert sum(p.numel() for p in meta_model(name).parameters()) == params


def test_state_dict_names_and_shapes_match_torchvision():
    reference = json.loads((FIXTURES / "tv_vgg11_bn_keys.json").read_text())
    ours = {k: list(v.shape) for k, v in meta_model("vgg11_bn").state_dict().items()}
    assert ours == reference


@pytest.mark.parametrize(("name", "convs"), list(zip(VARIANTS, [8, 10, 13, 16], strict=True)))
def test_weight_layers_follow_table_1(name, convs):
    """Configurations A/B/D/E have 11/13/16/19 weight layers: the convs plus three FCs."""
    for suffix, has_bn in (("", False), ("_bn", True)):
        model = meta_model(name + suffix, num_classes=10)
        layers = list(model.features)
        conv_layers = [m for m in layers if isinstance(m, nn.Conv2d)]
        assert len(conv_layers) == convs
        assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in conv_layers)
        assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 5
        assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == (convs if has_bn else 0)
        linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(25088, 4096), (4096, 4096), (4096, 10)]
        assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_torchvision_indices_of_last_pool():
    # features.N must name the same layer as torchvision's: the last pool closes the flat Sequential.
    assert isinstance(meta_model("vgg16").features[30], nn.MaxPool2d)
    assert isinstance(meta_model("vgg16_bn").features[43], nn.MaxPool2d)
    assert len(meta_model("vgg19_bn").features) == 53


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_forward_shapes_at_minimum_and_small_size(small_models, name):
    model = small_models[name]
    assert model.min_input_size == 32 and model.default_input_size == (1, 224, 224)
    with torch.no_grad():
        for size in (32, 48):
            out = model(torch.randn(2, 1, size, size))
            assert out.shape == (2, 7) and torch.isfinite(out).all()
        # Five pools leave 1x1 at 32; the adaptive pool brings it to the 7x7 the first FC expects.
        assert model.features(torch.randn(1, 1, 32, 32)).shape == (1, 512, 1, 1)


def test_minimum_input_is_tight_and_enforced(small_models):
    model = small_models["vgg11"]
    x = torch.randn(1, 1, 31, 31)
    with pytest.raises(InputSizeError, match="at least 32x32"):
        model(x)
    # Below 32 the fifth pool has nothing left to pool: the minimum is not over-cautious.
    with pytest.raises(RuntimeError), torch.no_grad():
        model.features(x)


def test_initialization_as_torchvision(small_models):
    model = small_models["vgg11_bn"]
    conv = model.features[4]  # 64 -> 128, 3x3
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (128 * 9)), rel=0.05)  # fan-out
    assert not conv.bias.any()
    bn = model.features[1]
    assert torch.equal(bn.weight, torch.ones(64)) and not bn.bias.any()
    fc = model.classifier[3]
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert not fc.bias.any()


def test_hidden_sets_the_width_of_the_two_fully_connected_layers():
    full = sum(p.numel() for p in meta_model("vgg11", num_classes=10).parameters())
    small = sum(p.numel() for p in meta_model("vgg11", num_classes=10, hidden=64).parameters())

    # 512*7*7 -> h -> h -> 10, with biases: only the classifier changes.
    def classifier(h: int) -> int:
        return (512 * 49 + 1) * h + (h + 1) * h + (h + 1) * 10

    assert full - small == classifier(4096) - classifier(64)
