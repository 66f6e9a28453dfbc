"""ResNet family: exact parameter counts (on the meta device), shapes, names, shortcuts, init."""

import json
import math
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import dependent_tensors, num_params, register, size_in
from cnnlab.models.resnet import BasicBlock, ZeroPadShortcut

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_imagenet_resnet_params_equal_torchvision(name, params):
    assert num_params(name) == params


@pytest.mark.parametrize(
    ("depth", "params"),
    [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)],
)
def test_cifar_resnet_and_plain_twin_params(depth, params):
    assert num_params(f"resnet{depth}", num_classes=10) == params
    # Option-A shortcuts carry no weights, so the plain twin has exactly as many.
    assert num_params(f"plain{depth}", num_classes=10) == params


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_state_dict_names_and_shapes_match_torchvision(name):
    reference = json.loads((FIXTURES / f"tv_{name}_keys.json").read_text())
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in cnnlab.create_model(name).state_dict().items()}
    assert ours == reference


@pytest.mark.slow
@pytest.mark.parametrize("name", cnnlab.list_models())
def test_every_model_takes_any_classes_and_channels_at_its_minimum_size(name):
    model = cnnlab.create_model(name, num_classes=7, in_chans=1).eval()
    size = model.min_input_size
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_cifar_resnet_depth_is_6n_plus_2():
    model = cnnlab.create_model("resnet56", num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 56  # 55 convs and one FC
    assert [len(s) for s in model.stages] == [9, 9, 9]


def test_plain_twin_has_no_shortcut_and_differs_from_resnet():
    torch.manual_seed(0)
    resnet = cnnlab.create_model("resnet20", num_classes=10)
    plain = cnnlab.create_model("plain20", num_classes=10)
    plain.load_state_dict(resnet.state_dict())  # same weights, only the wiring differs
    x = torch.randn(2, 3, 32, 32)
    assert not any(b.shortcut for b in plain.modules() if isinstance(b, BasicBlock))
    assert not torch.allclose(resnet.eval()(x), plain.eval()(x))


def test_basic_block_adds_identity_to_residual():
    block = BasicBlock(16, 16).eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(block(x), torch.relu(block.residual(x) + x))


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(stride=2, extra_channels=16)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


def test_he_initialization_and_bn_start():
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet50")
    w = model.layer3[0].conv2.weight  # 256 -> 256, 3x3
    expected = math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))  # fan-out mode
    assert w.std().item() == pytest.approx(expected, rel=0.02)
    assert torch.equal(model.bn1.weight, torch.ones(64)) and not model.bn1.bias.any()


def test_imagenet_resnet_downsamples_by_32():
    model = cnnlab.create_model("resnet18").eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 64, 96)).shape == (1, 512, 2, 3)


def test_unknown_model_suggests_closest_names():
    with pytest.raises(UnknownNameError, match="resnet20"):
        cnnlab.create_model("resnet2")
    with pytest.raises(UnknownNameError, match="cnnlab models"):
        cnnlab.create_model("transformer")


def test_unexpected_keyword_is_a_user_error():
    with pytest.raises(CnnlabError, match="unexpected keyword"):
        cnnlab.create_model("resnet18", depth=3)
    with pytest.raises(CnnlabError, match="multiple values for keyword argument 'lrn'"):
        cnnlab.create_model("alexnet_paper", lrn=False)  # an option the variant sets itself


def test_list_models_filters_and_registration_is_unique():
    assert cnnlab.list_models("plain*") == ["plain20", "plain32", "plain44", "plain56", "plain110"]
    assert cnnlab.list_models("resnet1*") == ["resnet18", "resnet101", "resnet110", "resnet152"]
    with pytest.raises(ValueError, match="twice"):

        @register
        def resnet18(**kwargs):
            return None


def test_dependent_tensors_find_head_and_stem_without_names() -> None:
    assert dependent_tensors("resnet18", "num_classes") == {"fc.weight": 0, "fc.bias": 0}
    assert dependent_tensors("resnet18", "in_chans") == {"conv1.weight": 1}
    googlenet = dependent_tensors("googlenet", "num_classes")
    assert {"fc.weight", "aux1.fc2.weight", "aux2.fc2.bias"} <= set(googlenet)
    assert dependent_tensors("googlenet", "num_classes", aux_logits=False).keys() == {"fc.weight", "fc.bias"}
    assert dependent_tensors("linear", "in_chans") == {"fc.weight": None}  # C x H x W flattened
    with torch.device("meta"):
        state = cnnlab.create_model("resnet18", num_classes=37, in_chans=1).state_dict()
    assert size_in(state, dependent_tensors("resnet18", "num_classes")) == 37
    assert size_in(state, dependent_tensors("resnet18", "in_chans")) == 1
    assert size_in({}, dependent_tensors("resnet18", "num_classes")) is None
