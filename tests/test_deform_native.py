"""deform_conv2d's C++ kernel (layers/native.py) against its grid_sample path: values and every
gradient, memory formats, threads, points far outside, and the build's bookkeeping."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import require_native

from cnnlab.layers import deform_conv, deform_conv2d, native

# (channels, out, kernel, stride, padding, dilation, groups, offset groups, modulated), input H, W
CASES = {
    "plain": ((4, 6, 3, 1, 1, 1, 1, 1, False), (7, 8)),
    "strided_rectangular": ((4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 1, 1, False), (8, 9)),
    # groups 2 and offset groups 3 split the 6 channels into runs of 2 and 1
    "groups_across_offset_groups": ((6, 4, 3, 1, 1, 1, 2, 3, True), (6, 7)),
    "offset_groups_within_groups": ((8, 6, 3, 2, 1, 1, 2, 4, True), (9, 8)),
    "depthwise": ((4, 4, 3, 1, 2, 2, 4, 1, True), (7, 7)),
}


def arguments(name: str, dtype: torch.dtype) -> tuple[list[torch.Tensor], dict]:
    """Input, offset, weight, bias (and mask) needing gradients, and the geometry, for CASES[name];
    offsets in [-2, 2) kept 0.2 from integers, where bilinear sampling has kinks."""
    (c, o, k, s, p, d, groups, offset_groups, modulated), (h, w) = CASES[name]
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (s, s) if isinstance(s, int) else s
    ph, pw = (p, p) if isinstance(p, int) else p
    dh, dw = (d, d) if isinstance(d, int) else d
    out_h, out_w = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    g = torch.Generator().manual_seed(0)
    taps = offset_groups * kh * kw
    offset = torch.randint(-2, 2, (2, 2 * taps, out_h, out_w), generator=g) + 0.2
    offset = offset + 0.6 * torch.rand(offset.shape, generator=g)
    tensors = [
        torch.randn(2, c, h, w, generator=g),
        offset,
        torch.randn(o, c // groups, kh, kw, generator=g),
        torch.randn(o, generator=g),
    ]
    if modulated:
        tensors.append(2 * torch.rand(2, taps, out_h, out_w, generator=g))
    tensors = [t.to(dtype).requires_grad_() for t in tensors]
    return tensors, {"stride": s, "padding": p, "dilation": d}


def run(tensors: list[torch.Tensor], geometry: dict) -> tuple[torch.Tensor, ...]:
    """The output and the gradients of every tensor for a fixed random output gradient."""
    x, offset, weight, bias, *mask = tensors
    out = deform_conv2d(x, offset, weight, bias, mask=mask[0] if mask else None, **geometry)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return (out.detach(), *torch.autograd.grad(out, tensors, grad))


def on_grid_sample(monkeypatch, fn, *args):
    with monkeypatch.context() as m:
        m.setattr(deform_conv, "_native_applies", lambda *tensors: False)
        return fn(*args)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_kernel_equals_the_grid_sample_path(name, dtype, monkeypatch):
    require_native()
    tensors, geometry = arguments(name, dtype)
    expected = on_grid_sample(monkeypatch, run, tensors, geometry)
    got = run(tensors, geometry)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    # the control: the same comparison sees every offset moved by a tenth of a pixel
    tensors[1].data += 0.1
    moved = run(tensors, geometry)
    assert not torch.allclose(moved[0], expected[0], rtol=tol, atol=tol)


def test_the_output_keeps_the_input_memory_format():
    require_native()
    tensors, geometry = arguments("plain", torch.float32)
    x, offset, weight, bias = (t.detach() for t in tensors)
    nchw = deform_conv2d(x, offset, weight, bias, **geometry)
    nhwc = deform_conv2d(x.contiguous(memory_format=torch.channels_last), offset, weight, bias, **geometry)
    assert nchw.is_contiguous() and nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc, nchw, rtol=1e-6, atol=1e-6)


def test_a_channels_last_layer_equals_its_nchw_twin():
    """Models train channels-last by default on the CPU: the weights too are then laid out NHWC."""
    require_native()
    torch.manual_seed(2)
    layer = deform_conv.DeformConv2d(6, 4, 3, padding=1, groups=2, offset_groups=3, modulated=True)
    torch.nn.init.normal_(layer.offset.weight, std=0.3)
    twin = deform_conv.DeformConv2d(6, 4, 3, padding=1, groups=2, offset_groups=3, modulated=True)
    twin.load_state_dict(layer.state_dict())
    twin = twin.to(memory_format=torch.channels_last)
    assert not twin.weight.is_contiguous()
    x = torch.randn(2, 6, 7, 8)
    outs = [layer(x), twin(x.contiguous(memory_format=torch.channels_last))]
    for out in outs:
        out.square().sum().backward()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(layer.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4)


def test_the_kernel_does_not_depend_on_the_number_of_threads():
    """The sampling and its backward pass, bit for bit, with at least one image per thread (the
    product in the forward pass is oneDNN's, which is not held to this)."""
    require_native()
    (x, offset, weight, _, mask), _ = arguments("groups_across_offset_groups", torch.float32)
    x, offset, mask = x.detach().permute(0, 2, 3, 1).contiguous(), offset.detach(), mask.detach()
    weight = weight.detach().permute(0, 2, 3, 1).reshape(len(weight), -1).contiguous()  # (O, K*C/groups)
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1), 2)
    grad_out = torch.randn(*offset.shape[:1], *offset.shape[2:], len(weight))  # (N, Hout, Wout, O)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            columns = torch.ops.cnnlab.deform_sample(x, offset, mask, *geometry)
            grads = torch.ops.cnnlab.deform_sample_backward(
                grad_out, weight, x, offset, mask, *geometry, True
            )
            results.append((columns, *grads))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("far", [1e30, -1e30, float("inf"), float("nan")])
def test_points_far_outside_or_undefined_read_zeros(far):
    require_native()
    tensors, geometry = arguments("plain", torch.float32)
    x, offset, weight, bias = (t.detach() for t in tensors)
    out = deform_conv2d(x, torch.full_like(offset, far), weight, bias, **geometry)
    torch.testing.assert_close(out, bias.view(1, -1, 1, 1).expand_as(out), rtol=0, atol=0)


def test_a_library_is_named_after_its_source(tmp_path, monkeypatch):
    source = tmp_path / "deform_sample.cpp"
    source.write_bytes(native.SOURCE.read_bytes())
    monkeypatch.setattr(native, "SOURCE", source)
    name = native.library_name()
    source.write_bytes(native.SOURCE.read_bytes() + b"// edited\n")
    assert native.library_name() != name  # an edited source never loads an old build


@pytest.mark.slow
def test_without_the_kernel_the_layer_samples_with_grid_sample():
    """In a process where the kernel is switched off, the layer still runs, on the pure path, and its
    output equals this process's."""
    code = (
        "import torch; from cnnlab.layers import DeformConv2d, native; torch.manual_seed(0);"
        "m = DeformConv2d(4, 6, 3, padding=1, modulated=True); torch.nn.init.normal_(m.offset.weight);"
        "y = m(torch.randn(2, 4, 7, 8)); y.sum().backward();"
        "print(native.available(), repr(y.sum().item()), repr(m.offset.weight.grad.sum().item()))"
    )
    env = {**os.environ, native.DISABLE: "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", code]
    printed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    available, out_sum, grad_sum = printed.stdout.split()
    assert available == "False"
    require_native()
    torch.manual_seed(0)
    m = deform_conv.DeformConv2d(4, 6, 3, padding=1, modulated=True)
    torch.nn.init.normal_(m.offset.weight)
    y = m(torch.randn(2, 4, 7, 8))
    y.sum().backward()
    assert abs(y.sum().item() - float(out_sum)) < 1e-3
    assert abs(m.offset.weight.grad.sum().item() - float(grad_sum)) < 1e-2 * max(1, abs(float(grad_sum)))
