"""DeformConv2d and deform_conv2d: plain-conv equivalence, shifts, bilinear sampling, gradients, layout.

Every test runs twice: sampled by the C++ kernel (layers/native.py) and by grid_sample, its fallback.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import require_native
from torch import nn

from cnnlab.layers import DeformConv2d, deform_conv, deform_conv2d


@pytest.fixture(autouse=True, params=["native", "grid_sample"])
def sampling(request, monkeypatch):
    if request.param == "native":
        require_native()
    else:
        monkeypatch.setattr(deform_conv, "_native_applies", lambda *tensors: False)


# (in, out, kernel, stride, padding, dilation, groups, offset_groups, modulated, bias), input H, W
CONFIGS = {
    "plain": ((4, 6, 3, 1, 1, 1, 1, 1, False, True), (7, 8)),
    "stride2": ((4, 6, 3, 2, 1, 1, 1, 1, False, True), (9, 8)),
    "padding2": ((4, 6, 3, 1, 2, 1, 1, 1, False, True), (6, 7)),
    "dilation2": ((4, 6, 3, 1, 2, 2, 1, 1, False, True), (9, 9)),
    "groups2": ((4, 6, 3, 1, 1, 1, 2, 1, False, True), (7, 8)),
    "offset_groups2": ((4, 6, 3, 1, 1, 1, 1, 2, False, True), (7, 8)),
    "rectangular": ((4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 1, 1, False, True), (8, 9)),
    "no_bias": ((4, 6, 3, 1, 1, 1, 1, 1, False, False), (7, 8)),
    "modulated": ((4, 6, 3, 1, 1, 1, 2, 2, True, True), (7, 8)),
}


def make_pair(name: str, dtype: torch.dtype) -> tuple[DeformConv2d, nn.Conv2d, torch.Tensor]:
    """A new DeformConv2d, an nn.Conv2d with the same weight and bias, and an input."""
    (cin, cout, k, s, p, d, g, og, modulated, bias), (h, w) = CONFIGS[name]
    torch.manual_seed(0)
    dcn = DeformConv2d(cin, cout, k, s, p, d, groups=g, offset_groups=og, modulated=modulated, bias=bias)
    conv = nn.Conv2d(cin, cout, k, s, p, d, groups=g, bias=bias)
    conv.load_state_dict({"weight": dcn.weight, **({"bias": dcn.bias} if bias else {})})
    return dcn.to(dtype), conv.to(dtype), torch.randn(2, cin, h, w, dtype=dtype)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_new_layer_equals_plain_conv(name):
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        dcn, conv, x = make_pair(name, dtype)
        with torch.no_grad():
            torch.testing.assert_close(dcn(x), conv(x), rtol=tol, atol=tol)


def test_zero_offsets_function_equals_conv2d_float64():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 9, 10, dtype=torch.float64)
    weight, bias = torch.randn(4, 3, 3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, (2, 1), (1, 2), (2, 1), groups=2)
    offset = torch.zeros(2, 3 * 2 * 6, *expected.shape[-2:], dtype=torch.float64)  # 3 offset groups
    out = deform_conv2d(x, offset, weight, bias, (2, 1), (1, 2), (2, 1))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def shifted(x: torch.Tensor, dy: int, dx: int, padding: int = 0) -> torch.Tensor:
    """x zero-padded by ``padding``, then y[..., i, j] = x[..., i + dy, j + dx], zero where that falls
    outside: padding first, so a tap in the padding can still read the image once shifted."""
    x = F.pad(x, (padding,) * 4)
    m = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    return F.pad(x, (m, m, m, m))[..., m + dy : m + dy + h, m + dx : m + dx + w]


def uniform_offset(n: int, taps: int, out_hw: tuple[int, int], dy: float, dx: float) -> torch.Tensor:
    """Every tap of every position moved by (dy, dx): channels alternate dy, dx."""
    offset = torch.empty(n, taps, 2, *out_hw, dtype=torch.float64)
    offset[:, :, 0], offset[:, :, 1] = dy, dx
    return offset.view(n, 2 * taps, *out_hw)


@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 0)])
def test_integer_offsets_equal_conv_of_shifted_input(stride, padding):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    weight, bias = torch.randn(5, 3, 3, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    expected = F.conv2d(shifted(x, 1, -2, padding), weight, bias, stride)
    offset = uniform_offset(2, 9, expected.shape[-2:], 1.0, -2.0)
    out = deform_conv2d(x, offset, weight, bias, stride, padding)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # and the shift matters: without it the output differs
    assert (out - F.conv2d(x, weight, bias, stride, padding)).abs().max() > 0.1


@pytest.mark.parametrize(
    ("dy", "dx", "first", "second"), [(0.5, 0.0, (0, 0), (1, 0)), (0.0, -1.5, (0, -1), (0, -2))]
)
def test_half_pixel_offset_averages_neighbouring_shifts(dy, dx, first, second):
    torch.manual_seed(3)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    a, b = (F.conv2d(shifted(x, *s, padding=1), weight) for s in (first, second))
    offset = uniform_offset(1, 9, (8, 8), dy, dx)
    torch.testing.assert_close(deform_conv2d(x, offset, weight, padding=1), (a + b) / 2, rtol=0, atol=1e-12)


def reference_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask=None):
    """The definition, one sample at a time, with torchvision.ops.deform_conv2d's channel layout:
    offset[n, g*2K + 2k] is dy and offset[n, g*2K + 2k + 1] is dx of tap k (row-major) for offset
    group g, the block of C/G consecutive input channels; mask[n, g*K + k] scales that sample."""
    n_, c_, h_, w_ = x.shape
    o_, cg_, kh, kw = weight.shape
    taps, groups = kh * kw, c_ // cg_
    og = offset.shape[1] // (2 * taps)
    out = torch.zeros(n_, o_, *offset.shape[-2:], dtype=x.dtype)

    def sample(n, c, y, xx):  # bilinear, zero outside
        y0, x0 = math.floor(y), math.floor(xx)
        value = 0.0
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xc, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                if 0 <= yy < h_ and 0 <= xc < w_:
                    value += wy * wx * x[n, c, yy, xc].item()
        return value

    for n in range(n_):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                for c in range(c_):
                    g, cg = c // (c_ // og), c // cg_
                    for k in range(taps):
                        dy, dx = (
                            offset[n, g * 2 * taps + 2 * k, i, j],
                            offset[n, g * 2 * taps + 2 * k + 1, i, j],
                        )
                        y = i * stride[0] - padding[0] + (k // kw) * dilation[0] + dy.item()
                        xx = j * stride[1] - padding[1] + (k % kw) * dilation[1] + dx.item()
                        v = sample(n, c, y, xx) * (
                            1.0 if mask is None else mask[n, g * taps + k, i, j].item()
                        )
                        rows = slice(cg * (o_ // groups), (cg + 1) * (o_ // groups))
                        out[n, rows, i, j] += weight[rows, c - cg * cg_, k // kw, k % kw] * v
    return out + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("modulated", [False, True])
def test_random_offsets_match_the_definition(modulated):
    torch.manual_seed(4)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    weight, bias = torch.randn(6, 2, 2, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    stride, padding, dilation = (2, 1), (1, 2), (1, 2)
    out_hw = (3, 6)
    offset = torch.randn(2, 2 * 2 * 6, *out_hw, dtype=torch.float64) * 2  # 2 offset groups, some outside
    mask = torch.rand(2, 2 * 6, *out_hw, dtype=torch.float64) if modulated else None
    out = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    expected = reference_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def off_integer(shape: tuple[int, ...]) -> torch.Tensor:
    """Offsets in [-2, 2) at least 0.2 away from any integer: bilinear sampling has kinks there."""
    torch.manual_seed(5)
    whole = torch.randint(-2, 2, shape).double()
    return whole + 0.2 + 0.6 * torch.rand(shape, dtype=torch.float64)


@pytest.mark.parametrize("modulated", [False, True])
def test_gradcheck(modulated):
    torch.manual_seed(6)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 2, 2, 3, dtype=torch.float64, requires_grad=True)  # groups 2
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    out_hw = (5, 2)  # stride (1, 2), padding (1, 1), dilation (2, 1)
    offset = off_integer((1, 2 * 2 * 6, *out_hw)).requires_grad_()  # 2 offset groups
    inputs = [x, offset, weight, bias]
    if modulated:
        inputs.append(torch.rand(1, 2 * 6, *out_hw, dtype=torch.float64, requires_grad=True))

    def f(*args):
        return deform_conv2d(*args[:4], (1, 2), (1, 1), (2, 1), *args[4:])

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.slow
def test_gradcheck_modulated_with_a_frozen_weight():
    """The modulated backward pass has separate paths for each input needing a gradient."""
    torch.manual_seed(7)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    offset = off_integer((1, 18, 4, 4)).requires_grad_()
    mask = torch.rand(1, 9, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda o, m: deform_conv2d(x, o, weight, None, 1, 1, 1, m), (offset, mask)
    )


def test_zero_mask_gives_the_bias_only():
    torch.manual_seed(8)
    x = torch.randn(2, 4, 6, 6)
    weight, bias = torch.randn(5, 4, 3, 3), torch.randn(5)
    offset = torch.randn(2, 18, 6, 6)
    out = deform_conv2d(x, offset, weight, bias, padding=1, mask=torch.zeros(2, 9, 6, 6))
    torch.testing.assert_close(out, bias.view(1, 5, 1, 1).expand(2, 5, 6, 6), rtol=0, atol=0)


def test_drop_in_for_a_resnet_conv3x3():
    torch.manual_seed(9)
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
    torch.manual_seed(9)
    dcn = DeformConv2d(16, 32, 3, stride=2, padding=1, bias=False)
    assert dcn.bias is None and dcn.mask is None
    torch.testing.assert_close(dcn.weight, conv.weight, rtol=0, atol=0)  # nn.Conv2d's own init
    assert {k: tuple(v.shape) for k, v in dcn.state_dict().items()} == {
        "weight": (32, 16, 3, 3),
        "offset.weight": (18, 16, 3, 3),
        "offset.bias": (18,),
    }
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(dcn(x), conv(x), rtol=1e-5, atol=1e-5)


def test_init_matches_nn_conv2d_bias_and_zero_branches():
    torch.manual_seed(10)
    conv = nn.Conv2d(6, 8, (3, 2), bias=True)
    torch.manual_seed(10)
    dcn = DeformConv2d(6, 8, (3, 2), modulated=True, offset_groups=3)
    torch.testing.assert_close(dcn.bias, conv.bias, rtol=0, atol=0)
    assert dcn.offset.weight.shape == (2 * 3 * 6, 6, 3, 2) and dcn.mask.weight.shape == (3 * 6, 6, 3, 2)
    for p in (*dcn.offset.parameters(), *dcn.mask.parameters()):
        assert not p.any()
    offset, mask = dcn.offsets(torch.randn(1, 6, 5, 5))
    assert not offset.any() and torch.equal(mask, torch.ones_like(mask))


def test_offset_branch_learns_from_the_zero_init():
    """At zero offsets every sample sits on a pixel: the offsets must still get a gradient."""
    torch.manual_seed(11)
    dcn = DeformConv2d(3, 4, 3, padding=1, modulated=True)
    dcn(torch.randn(2, 3, 6, 6)).square().sum().backward()
    assert dcn.offset.weight.grad.abs().sum() > 0 and dcn.mask.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("modulated", [False, True])
def test_backward_keeps_one_im2col(modulated):
    """What autograd keeps for the backward pass is one columns buffer, plus tensors C/2 times smaller."""
    torch.manual_seed(12)
    n, c, h, w, taps = 2, 32, 8, 8, 9
    x = torch.randn(n, c, h, w, requires_grad=True)
    weight = torch.randn(c, c, 3, 3, requires_grad=True)
    offset = torch.randn(n, 2 * taps, h, w, requires_grad=True)
    mask = torch.rand(n, taps, h, w, requires_grad=True) if modulated else None
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        deform_conv2d(x, offset, weight, padding=1, mask=mask)
    columns = n * c * taps * h * w
    assert max(saved.values()) == columns
    assert sum(saved.values()) < 1.5 * columns


def test_bad_offset_shape_is_refused():
    x, weight = torch.randn(1, 4, 6, 6), torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="offset must be"):
        deform_conv2d(x, torch.zeros(1, 17, 4, 4), weight)
    with pytest.raises(ValueError, match="offset must be"):
        deform_conv2d(x, torch.zeros(1, 18, 6, 6), weight)  # the size of a padded conv's output
    with pytest.raises(ValueError, match="mask must be"):
        deform_conv2d(x, torch.zeros(1, 18, 4, 4), weight, mask=torch.ones(1, 18, 4, 4))


@pytest.mark.slow
@pytest.mark.parametrize("frozen", ["none", "weight", "input"])
def test_gradcheck_the_unmodulated_product_with_frozen_inputs(frozen):
    """The unmasked product has its own backward pass (the weight's gradient summed as it is formed)."""
    torch.manual_seed(13)
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=frozen != "input")
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=frozen != "weight")  # groups 2
    offset = off_integer((2, 18, 4, 4)).requires_grad_()
    names = [name for name, t in (("x", x), ("w", weight), ("o", offset)) if t.requires_grad]

    def f(*args):
        given = dict(zip(names, args, strict=True))
        return deform_conv2d(given.get("x", x), given["o"], given.get("w", weight), None, 1, 1)

    inputs = [t for t in (x, weight, offset) if t.requires_grad]
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.slow
def test_gradcheck_the_weight_alone():
    """Input and offsets frozen: the weight's gradient, with no gradient of the sampling asked for."""
    torch.manual_seed(15)
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    offset = off_integer((2, 18, 4, 4))
    weight = torch.randn(6, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: deform_conv2d(x, offset, w, None, 1, 1), [weight])


def test_the_function_computes_in_float32_under_autocast():
    """Called directly under bf16 autocast, as the layer is: the fp32 values and gradients, and a bf16
    input is taken up to fp32."""
    torch.manual_seed(16)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    offset = off_integer((2, 18, 6, 6)).float().requires_grad_()
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    expected = deform_conv2d(x, offset, weight, None, 1, 1)
    grads = torch.autograd.grad(expected.square().sum(), (x, offset, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_conv2d(x, offset, weight, None, 1, 1)
        from_bf16 = deform_conv2d(x.bfloat16(), offset, weight, None, 1, 1)
    assert out.dtype == from_bf16.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(from_bf16, deform_conv2d(x.bfloat16().float(), offset, weight, None, 1, 1))
    got = torch.autograd.grad(out.square().sum(), (x, offset, weight))
    for a, b in zip(got, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_the_deep_product_as_a_1x1_conv_matches_the_matmul(monkeypatch):
    """Deep products (many channels) go through a 1x1 convolution: same values and gradients."""
    from cnnlab.layers import deform_conv as layers

    torch.manual_seed(14)
    x = torch.randn(2, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)  # groups 2
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    offset = off_integer((2, 2 * 2 * 6, 3, 5)).requires_grad_()  # 2 offset groups, stride (2, 1)
    inputs = (x, offset, weight, bias)

    def f(*args):
        return deform_conv2d(*args, (2, 1), 1, 1)

    expected = f(*inputs)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    monkeypatch.setattr(layers, "CONV_GEMM_MIN_DEPTH", 1)
    out = f(*inputs)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    for got, want in zip(torch.autograd.grad(out.square().sum(), inputs), expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    assert torch.autograd.gradcheck(f, inputs)
