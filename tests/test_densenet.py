"""DenseNet family: exact parameter counts (meta device), torchvision names, shapes, minimum sizes,
dense connectivity, and the memory-efficient (checkpointed) path against the plain one."""

import json
import math
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.errors import InputSizeError
from cnnlab.models import num_params
from cnnlab.models.densenet import DenseBlock, DenseLayer, DenseNet

FIXTURES = Path(__file__).parent / "fixtures"
VARIANTS = ["densenet121", "densenet169", "densenet201", "densenet161", "densenet_bc_100"]


@pytest.mark.parametrize(
    ("name", "num_classes", "params"),
    [
        # torchvision's counts (the reference tool, tv:densenet121 ...)
        ("densenet121", 1000, 7_978_856),
        ("densenet169", 1000, 14_149_480),
        ("densenet201", 1000, 20_013_928),
        ("densenet161", 1000, 28_681_000),
        # No library has DenseNet-BC-100. 769,162 was computed three ways that agree: the closed form
        # below; torchvision's DenseNet(12, (16, 16, 16), 24, num_classes=10) (772,090) minus its 7x7
        # stem conv and stem BN (3,528 + 48) plus our 3x3 stem conv (648); and this model. The paper's
        # Table 2 rounds it to 0.8M.
        ("densenet_bc_100", 10, 769_162),
    ],
)
def test_params_equal_reference(name, num_classes, params):
    assert num_params(name, num_classes=num_classes) == params


def test_densenet_bc_100_count_matches_closed_form():
    k, width, n, classes = 12, 48, 16, 10
    total, channels = 3 * 9 * 2 * k, 2 * k  # 3x3 stem conv to 2k channels
    for block in range(3):
        for i in range(n):
            c = channels + i * k  # what layer i of the block sees: every earlier map, concatenated
            total += 2 * c + c * width + 2 * width + width * k * 9  # BN, 1x1, BN, 3x3
        channels += n * k
        if block < 2:  # transition: BN and a 1x1 conv that halves the channels
            total += 2 * channels + channels * (channels // 2)
            channels //= 2
    total += 2 * channels + channels * classes + classes  # final BN and FC
    assert channels == 342
    assert num_params("densenet_bc_100", num_classes=classes) == total


def test_state_dict_names_and_shapes_match_torchvision():
    reference = json.loads((FIXTURES / "tv_densenet121_keys.json").read_text())
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in cnnlab.create_model("densenet121").state_dict().items()}
    assert ours == reference


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_forward_shapes_at_minimum_and_small_size(name):
    model = cnnlab.create_model(name, num_classes=7, in_chans=1).eval()
    small = 12 if name == "densenet_bc_100" else 37  # odd sides: pooling floors them
    with torch.no_grad():
        for size in (model.min_input_size, small):
            out = model(torch.randn(2, 1, size, size))
            assert out.shape == (2, 7)
            assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "minimum"), [("densenet121", 29), ("densenet161", 29), ("densenet_bc_100", 4)]
)
def test_minimum_size_is_tight_and_enforced(name, minimum):
    model = cnnlab.create_model(name, num_classes=7, in_chans=1).eval()
    assert model.min_input_size == minimum
    with torch.no_grad():
        assert model.features(torch.randn(1, 1, minimum, minimum)).shape[-2:] == (1, 1)
        with pytest.raises(RuntimeError):  # one pixel less: the last transition's pool has nothing left
            model.features(torch.randn(1, 1, minimum - 1, minimum - 1))
    with pytest.raises(InputSizeError, match=f"at least {minimum}x{minimum}"):
        model(torch.randn(1, 1, minimum - 1, minimum - 1))


def test_default_input_sizes():
    assert cnnlab.create_model("densenet121", in_chans=1).default_input_size == (1, 224, 224)
    assert cnnlab.create_model("densenet_bc_100").default_input_size == (3, 32, 32)


def test_each_layer_sees_every_earlier_map_and_the_block_concatenates_them():
    torch.manual_seed(0)
    block = DenseBlock(4, in_ch=8, growth_rate=5).eval()
    assert [layer.conv1.in_channels for layer in block.values()] == [8, 13, 18, 23]
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        out = block(x)
        layers = list(block.values())
        first = layers[0]([x])
        second = layers[1]([x, first])
    assert out.shape == (2, 8 + 4 * 5, 6, 6)
    assert torch.equal(out[:, :8], x)  # the block's input is carried through unchanged
    assert torch.equal(out[:, 8:13], first) and torch.equal(out[:, 13:18], second)


def test_channels_through_blocks_and_transitions():
    model = cnnlab.create_model("densenet121")
    f = model.features
    # 64 + 6*32 = 256 -> 128; 128 + 12*32 = 512 -> 256; 256 + 24*32 = 1024 -> 512; 512 + 16*32 = 1024
    assert [f.transition1.conv.out_channels, f.transition2.conv.out_channels] == [128, 256]
    assert f.transition3.conv.out_channels == 512 and f.norm5.num_features == 1024
    assert model.classifier.in_features == 1024
    assert f.denseblock1.denselayer1.conv1.out_channels == 4 * 32  # bottleneck of 4k channels
    with torch.no_grad():
        y = f.transition1(torch.randn(1, 256, 8, 8))
    assert y.shape == (1, 128, 4, 4)


def test_densenet_bc_100_has_100_weighted_layers():
    model = cnnlab.create_model("densenet_bc_100", num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 100  # stem + 3 x 16 x 2 + 2 transitions, and the FC
    assert model.features.conv0.kernel_size == (3, 3) and model.features.conv0.out_channels == 24
    assert not hasattr(model.features, "pool0")


def _train_step(model: DenseNet, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    out = model(x)
    (out * torch.arange(1.0, out.shape[1] + 1)).sum().backward()  # a loss that weighs every logit
    return out.detach(), {n: p.grad for n, p in model.named_parameters()}


def test_memory_efficient_gives_same_outputs_gradients_and_bn_statistics():
    torch.manual_seed(0)
    kwargs = dict(growth_rate=6, block_config=(3, 3), num_init_features=8, num_classes=5, stem="cifar")
    plain = DenseNet(**kwargs)
    efficient = DenseNet(memory_efficient=True, **kwargs)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 12, 12)

    recomputed = []
    efficient.features.denseblock1.denselayer2.conv1.register_forward_pre_hook(
        lambda *a: recomputed.append(1)
    )
    out_plain, grads_plain = _train_step(plain, x)
    out_eff, grads_eff = _train_step(efficient, x)

    assert len(recomputed) == 2  # once in the forward, once more in the backward: checkpointed
    assert torch.allclose(out_plain, out_eff, rtol=1e-5, atol=1e-6)
    for name, grad in grads_plain.items():
        assert torch.allclose(grad, grads_eff[name], rtol=1e-4, atol=1e-6), name
    # The recomputation must not update norm1's running statistics a second time.
    buffers_eff = dict(efficient.named_buffers())
    for name, buf in plain.named_buffers():
        assert torch.allclose(buf.float(), buffers_eff[name].float(), rtol=1e-5, atol=1e-7), name


def test_memory_efficient_is_plain_without_gradients():
    torch.manual_seed(0)
    model = cnnlab.create_model("densenet_bc_100", num_classes=10, memory_efficient=True).eval()
    assert all(layer.memory_efficient for layer in model.modules() if isinstance(layer, DenseLayer))
    plain = cnnlab.create_model("densenet_bc_100", num_classes=10).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_torchvision_initialization():
    torch.manual_seed(0)
    model = cnnlab.create_model("densenet121")
    w = model.features.denseblock3.denselayer1.conv2.weight  # 128 -> 32, 3x3
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (128 * 9)), rel=0.03)  # He normal, fan-in
    norm = model.features.denseblock2.denselayer4.norm1
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()
    assert not model.classifier.bias.any() and model.classifier.weight.any()
