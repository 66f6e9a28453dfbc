"""AlexNet family: parameter counts, torchvision names, the 2012 paper's layout (map sizes, grouped
towers, LRN placement, dropout placement, initialization), and Local Response Normalization against
the paper's formula and torch.nn.LocalResponseNorm."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError, InputSizeError
from cnnlab.layers import LocalResponseNorm
from cnnlab.models import num_params

FIXTURES = Path(__file__).parent / "fixtures"

# The 2012 network counted by hand from Section 3.5 and Figure 2 (weights + biases, 3 channels,
# 1000 classes); groups=2 halves the input channels each kernel sees:
#   conv1  96 x 11x11x3              34,848 +  96 =     34,944
#   conv2 256 x 5x5x48   (2 towers) 307,200 + 256 =    307,456
#   conv3 384 x 3x3x256  (full)     884,736 + 384 =    885,120
#   conv4 384 x 3x3x192  (2 towers) 663,552 + 384 =    663,936
#   conv5 256 x 3x3x192  (2 towers) 442,368 + 256 =    442,624
#   fc6   9216 -> 4096           37,748,736 + 4096 = 37,752,832
#   fc7   4096 -> 4096           16,777,216 + 4096 = 16,781,312
#   fc8   4096 -> 1000            4,096,000 + 1000 =  4,097,000
#   total                                             60,965,224   (the paper's "60 million")
PAPER_PARAMS = 34_944 + 307_456 + 885_120 + 663_936 + 442_624 + 37_752_832 + 16_781_312 + 4_097_000


@pytest.mark.parametrize(
    ("name", "params"),
    [("alexnet", 61_100_840), ("alexnet_paper", 60_965_224)],  # torchvision's; the hand count above
)
def test_params(name, params):
    assert num_params(name) == params


def test_hand_count_of_the_paper_network():
    assert PAPER_PARAMS == 60_965_224


def test_state_dict_names_and_shapes_match_torchvision():
    reference = json.loads((FIXTURES / "tv_alexnet_keys.json").read_text())
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in cnnlab.create_model("alexnet").state_dict().items()}
    assert ours == reference


@pytest.mark.slow
@pytest.mark.parametrize(("name", "min_size", "small"), [("alexnet", 63, 96), ("alexnet_paper", 67, 80)])
def test_shapes_minimum_and_refusal(name, min_size, small):
    model = cnnlab.create_model(name, num_classes=7, in_chans=1).eval()
    assert model.min_input_size == min_size
    with torch.no_grad():
        for size in (min_size, small):
            out = model(torch.randn(2, 1, size, size))
            assert out.shape == (2, 7) and torch.isfinite(out).all()
        # one pixel less and the last pooling would get a 2x2 map: refused with a clear message
        with pytest.raises(InputSizeError, match=f"{min_size}x{min_size}"):
            model(torch.randn(1, 1, min_size - 1, min_size - 1))
        with pytest.raises(RuntimeError):  # what the refusal protects from
            model.features(torch.randn(1, 1, min_size - 1, min_size - 1))
        x = torch.randn(2, 1, small, small)
        assert torch.equal(model(x), model(x))  # eval: deterministic
        torch.manual_seed(0)
        assert not torch.equal(model.train()(x), model.eval()(x))  # dropout acts in training only


def test_paper_feature_maps_at_227_follow_figure_2():
    with torch.device("meta"):  # shapes only
        model = cnnlab.create_model("alexnet_paper").eval()
    shapes = {}

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape[1:])  # returns None: the output is left alone

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.features.named_children()]
    with torch.no_grad():
        model(torch.empty(1, 3, 227, 227, device="meta"))
    for h in hooks:
        h.remove()
    convs = [shapes[n] for n, m in model.features.named_children() if isinstance(m, nn.Conv2d)]
    assert convs == [(96, 55, 55), (256, 27, 27), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    pools = [shapes[n] for n, m in model.features.named_children() if isinstance(m, nn.MaxPool2d)]
    assert pools == [(96, 27, 27), (256, 13, 13), (256, 6, 6)]  # 6*6*256 = 9216 inputs of fc6


def test_paper_layer_order_towers_and_dropout():
    with torch.device("meta"):
        model = cnnlab.create_model("alexnet_paper")
    kinds = [type(m).__name__ for m in model.features]
    # LRN after the ReLU of conv1 and conv2, before their max pooling
    assert kinds[:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"] * 2
    assert kinds.count("LocalResponseNorm") == 2
    lrn = [m for m in model.features if isinstance(m, LocalResponseNorm)]
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 2.0) for m in lrn)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert all((m.kernel_size, m.stride) == (3, 2) for m in pools)  # overlapping pooling
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert (convs[0].kernel_size, convs[0].stride, convs[0].padding) == ((11, 11), (4, 4), (0, 0))
    # dropout on the outputs of fc6 and fc7 (Section 4.2)
    assert [type(m).__name__ for m in model.classifier] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"
    ]  # fmt: skip
    assert all(m.p == 0.5 for m in model.classifier if isinstance(m, nn.Dropout))


def test_paper_towers_do_not_talk_in_conv2():
    with torch.device("meta"):
        model = cnnlab.create_model("alexnet_paper")
    conv2 = [m for m in model.features if isinstance(m, nn.Conv2d)][1].to_empty(device="cpu")
    nn.init.normal_(conv2.weight)
    nn.init.zeros_(conv2.bias)  # to_empty leaves it uninitialized: a NaN there fails torch.equal
    x = torch.randn(1, 96, 13, 13)
    changed = x.clone()
    changed[:, :48] += 1.0  # the first GPU's maps only
    with torch.no_grad():
        a, b = conv2(x), conv2(changed)
    assert not torch.allclose(a[:, :128], b[:, :128])  # the first tower sees the change
    assert torch.equal(a[:, 128:], b[:, 128:])  # the second does not


@pytest.mark.slow
def test_paper_initialization():
    torch.manual_seed(0)
    model = cnnlab.create_model("alexnet_paper")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for layer in convs + fcs:
        assert layer.weight.mean().abs() < 1e-3
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)
    # unit biases in conv2, conv4, conv5, fc6, fc7; zero in conv1, conv3, fc8
    assert [c.bias.unique().tolist() for c in convs] == [[0.0], [1.0], [0.0], [1.0], [1.0]]
    assert [f.bias.unique().tolist() for f in fcs] == [[1.0], [1.0], [0.0]]


def test_kaiming_initialization_keeps_each_layers_variance():
    torch.manual_seed(0)
    model = cnnlab.create_model("alexnet_paper", num_classes=10, init="kaiming")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        fan_in = layer.weight[0].numel()
        assert layer.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
        assert not layer.bias.any()
    with pytest.raises(CnnlabError, match="init"):
        cnnlab.create_model("alexnet", init="xavier")


# ------------------------------------------------------------------------------------------- LRN
def lrn_from_the_paper(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Section 3.3, one channel at a time:

        b[i] = a[i] / (k + alpha/n * sum_{j = max(0, i - n//2)}^{min(C-1, i + (n-1)//2)} a[j]^2) ** beta

    With cnnlab's documented convention, alpha is divided by n (Caffe, torch). For odd n the bounds
    are the paper's i -/+ n/2; for even n the paper's bounds would hold n+1 maps, so, as torch,
    the window takes n//2 maps before i and n//2 - 1 after (n in all).
    """
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + (n - 1) // 2)
        total = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, i] = a[:, i] / (k + alpha / n * total) ** beta
    return out


@pytest.mark.parametrize(
    ("channels", "n", "alpha", "beta", "k"),
    [
        (96, 5, 1e-4, 0.75, 2.0),  # AlexNet's
        (8, 5, 0.5, 0.75, 2.0),
        (8, 4, 0.5, 0.75, 1.0),  # even n
        (7, 2, 1.0, 0.5, 1.0),
        (6, 1, 1.0, 0.75, 2.0),  # n=1: each map normalized by itself
        (3, 5, 1.0, 0.75, 2.0),  # fewer channels than the window
        (2, 4, 1.0, 0.6, 0.5),  # fewer channels, even n
        (3, 7, 2.0, 0.75, 1.0),
    ],
)
def test_lrn_matches_the_paper_formula_and_torch(channels, n, alpha, beta, k):
    torch.manual_seed(channels * 10 + n)
    a = 3.0 * torch.randn(2, channels, 5, 4, dtype=torch.float64)  # large enough that the sum matters
    ours = LocalResponseNorm(size=n, alpha=alpha, beta=beta, k=k)(a)
    assert torch.allclose(ours, lrn_from_the_paper(a, n, alpha, beta, k), rtol=1e-10, atol=1e-12)
    assert torch.allclose(ours, nn.LocalResponseNorm(n, alpha=alpha, beta=beta, k=k)(a), rtol=1e-10)
    assert not torch.allclose(ours, a / k**beta, rtol=1e-6)  # the sum of squares did change it


def test_batchnorm_in_place_of_lrn():
    with torch.device("meta"):
        model = cnnlab.create_model("alexnet", bn=True)
    kinds = [type(m).__name__ for m in model.features]
    # after the ReLU of conv1 and conv2, before their pooling: where alexnet_paper has LRN
    assert kinds[:8] == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d"] * 2
    assert kinds.count("BatchNorm2d") == 2 and "LocalResponseNorm" not in kinds
    assert num_params("alexnet", bn=True) - num_params("alexnet") == 2 * (64 + 192)  # scale and shift
    assert num_params("alexnet", lrn=True) == num_params("alexnet")
    with pytest.raises(CnnlabError, match="lrn and bn"):
        cnnlab.create_model("alexnet", lrn=True, bn=True)
    with pytest.raises(CnnlabError, match="lrn and bn"):
        cnnlab.create_model("alexnet_paper", bn=True)  # the paper's has LRN already
