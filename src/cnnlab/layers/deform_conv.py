"""Deformable convolution: the ``deform_conv2d`` op (Dai et al. 2017; modulated, Zhu et al. 2019) and
the ``DeformConv2d`` layer that owns its offset branch.

Where ``native.py``'s C++ kernel is built, CPU tensors in float32 or float64 are sampled by it,
channels-last; otherwise, and as the reference the tests hold the kernel to, by ``grid_sample``.
Apart from that optional kernel the file imports only torch, so ``benchmarks/deform_conv.py
--baseline`` can load an older copy of it on its own.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

try:  # absent when an older copy of this file is loaded on its own (benchmarks/deform_conv.py)
    from cnnlab.layers import native
except ImportError:
    native = None  # type: ignore[assignment]


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """An int or a pair, as ``nn.Conv2d`` accepts, as a pair."""
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {value!r}")
    return pair  # type: ignore[return-value]


def _base_grid(
    size: tuple[int, int],
    kernel: tuple[int, int],
    out_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    like: torch.Tensor,
) -> torch.Tensor:
    """The regular sampling grid p0 + pn of a convolution, as ``grid_sample`` coordinates.

    Shape (kh*kw, Hout, Wout, 2), last axis (x, y). Pixel index i of a side of n pixels has its centre
    at (2i + 1)/n - 1 when ``align_corners=False``; the grid is computed in float64 and rounded once,
    so zero offsets land on the pixel centres as exactly as the dtype allows.
    """
    axes = []
    for side, k, o, s, p, d in zip(size, kernel, out_size, stride, padding, dilation, strict=True):
        pos = (torch.arange(k, dtype=torch.float64) * d)[:, None] + (torch.arange(o) * s - p)[None, :]
        axes.append((2 * pos + 1) / side - 1)  # (k, out): tap, output position
    gy, gx = axes
    kh, kw = kernel
    grid = torch.stack(
        (
            gx[None, :, None, :].expand(kh, kw, out_size[0], out_size[1]),
            gy[:, None, :, None].expand(kh, kw, out_size[0], out_size[1]),
        ),
        dim=-1,
    )
    return grid.reshape(kh * kw, out_size[0], out_size[1], 2).to(like.device, like.dtype)


def _quarters(n: int) -> list[slice]:
    """A batch of n in four slices (fewer if n < 4)."""
    step = max(1, -(-n // 4))
    return [slice(i, i + step) for i in range(0, n, step)]


def _add_weight_grad(
    grad_weight: torch.Tensor, grad_out: torch.Tensor, columns: torch.Tensor
) -> torch.Tensor:
    """``grad_weight += sum over the batch of grad_out @ columns^T``, per group, with ``addbmm``: no
    per-sample (O, C*K) products are kept. Shapes: grad_weight (groups, O/groups, C/groups*K),
    grad_out (n, groups, O/groups, L), columns (n, groups, C/groups*K, L)."""
    for g in range(grad_weight.shape[0]):
        grad_weight[g].addbmm_(grad_out[:, g], columns[:, g].mT)
    return grad_weight


class _GroupedMatmul(torch.autograd.Function):
    """``weight @ columns``, the im2col product, with the weight's gradient summed over the batch as
    it is formed (``addbmm``): autograd's broadcast matmul would first build one (O, C*K) gradient per
    sample, a buffer as large as the columns, then sum it.
    Shapes: columns (N, groups, C/groups*K, L), weight (groups, O/groups, C/groups*K).
    """

    @staticmethod
    def forward(ctx, columns: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(columns, weight)
        return torch.matmul(weight, columns)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        columns, weight = ctx.saved_tensors
        need_columns, need_weight = ctx.needs_input_grad
        grad_columns = torch.matmul(weight.mT, grad_out) if need_columns else None
        grad_weight = None
        if need_weight:
            grad_weight = _add_weight_grad(weight.new_zeros(weight.shape), grad_out, columns)
        return grad_columns, grad_weight


class _ModulatedMatmul(torch.autograd.Function):
    """``weight @ (columns * mask)`` that keeps only ``columns`` and ``mask`` for the backward pass.

    Plain autograd would keep both the sampled columns (for the mask's gradient) and their masked copy
    (for the weight's): two im2col buffers. Recomputing the product in the backward pass costs one
    elementwise multiply and keeps the layer's memory at one im2col, as without a mask; products with
    the columns are formed a quarter of the batch at a time, so their temporaries stay small.
    Shapes: columns (N, G, C/G, K, L), mask (N, G, 1, K, L), weight (groups, O/groups, C/groups*K).
    """

    @staticmethod
    def forward(ctx, columns: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(columns, mask, weight)
        groups = weight.shape[0]
        # (n, G, C/G, K, L) -> (n, groups, C/groups*K, L), a quarter of the batch at a time
        return torch.cat(
            [
                torch.matmul(weight, (columns[c] * mask[c]).flatten(1, 3).unflatten(1, (groups, -1)))
                for c in _quarters(columns.shape[0])
            ]
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        columns, mask, weight = ctx.saved_tensors
        groups, chunks = weight.shape[0], _quarters(columns.shape[0])
        need_columns, need_mask, need_weight = ctx.needs_input_grad
        grad_columns = grad_mask = grad_weight = None
        if need_weight:
            # (n, G, C/G, K, L) -> (n, groups, C/groups*K, L), transposed for the weight's gradient
            grad_weight = weight.new_zeros(weight.shape)
            for c in chunks:
                masked = (columns[c] * mask[c]).flatten(1, 3).unflatten(1, (groups, -1))
                _add_weight_grad(grad_weight, grad_out[c], masked)
        if need_columns or need_mask:
            grad_masked = torch.matmul(weight.transpose(-1, -2), grad_out).view(columns.shape)
            if need_mask:
                grad_mask = torch.cat([(grad_masked[c] * columns[c]).sum(2, keepdim=True) for c in chunks])
            if need_columns:
                grad_columns = grad_masked.mul_(mask)
        return grad_columns, grad_mask, grad_weight


def _output_shape(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int]:
    """deform_conv2d's output height and width and its number of offset groups, once every argument's
    shape is checked against the others (ValueError, naming the expected shape, otherwise)."""
    n, channels, height, width = input.shape
    out_ch, group_ch, kh, kw = weight.shape
    taps = kh * kw
    if channels % group_ch or out_ch % (channels // group_ch):
        raise ValueError(f"weight {tuple(weight.shape)} does not fit an input of {channels} channels")
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    offset_groups = offset.shape[1] // (2 * taps) if offset.dim() == 4 else 0
    if (
        offset_groups < 1
        or channels % offset_groups
        or tuple(offset.shape) != (n, 2 * offset_groups * taps, out_h, out_w)
    ):
        raise ValueError(
            f"offset must be (N, 2*offset_groups*{taps}, {out_h}, {out_w}) with offset_groups dividing "
            f"{channels}, got {tuple(offset.shape)}"
        )
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input {height}x{width} is smaller than the {kh}x{kw} kernel's dilated extent")
    if mask is not None and tuple(mask.shape) != (n, offset_groups * taps, out_h, out_w):
        raise ValueError(
            f"mask must be ({n}, {offset_groups * taps}, {out_h}, {out_w}), got {tuple(mask.shape)}"
        )
    return out_h, out_w, offset_groups


# From this depth (input channels per group times taps) on, deform_conv2d's product is a 1x1
# convolution; below it, a batched matmul, which wins at 64-128 channels (benchmarks/README.md).
CONV_GEMM_MIN_DEPTH = 2048


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution (Dai et al. 2017) with given offsets, and the modulated form (Zhu et al.
    2019, DCNv2) when ``mask`` is given; differentiable in every tensor argument.

    Each kernel tap n of each output position p0 reads the input at p0 + pn + delta_pn by bilinear
    interpolation, with zeros outside the image. Arguments and layouts, as ``torchvision.ops.deform_conv2d``:

    - ``input`` (N, C, H, W); ``weight`` (O, C/groups, kh, kw), so ``groups`` = C / weight.shape[1];
    - ``offset`` (N, 2*G*kh*kw, Hout, Wout): for each offset group g (a block of C/G consecutive input
      channels that share offsets), for each tap in row-major order, (dy, dx) in pixels. G is read
      from the shape;
    - ``mask`` (N, G*kh*kw, Hout, Wout), same group/tap order: multiplies each sampled value.

    How: ``grid_sample`` (bilinear, zero padding, ``align_corners=False``, pixel i's centre at
    (2i + 1)/size - 1) reads every input channel at the K = kh*kw deformed grids in one call, giving the
    im2col columns (N, C*K, Hout*Wout) in one buffer; one batched matmul with the weight finishes the
    convolution, its weight gradient summed over the batch with ``addbmm`` as it is formed rather than
    from a per-sample buffer as large as the columns. Deep products (C/groups*K >=
    ``CONV_GEMM_MIN_DEPTH``, ResNet-50's stage 4) run as a 1x1 convolution over the columns instead,
    where oneDNN's kernels beat BLAS. That buffer, kept for the weight's gradient, is the layer's memory
    cost, as for an unfold-based convolution; no per-tap copies are made. Why this layout and not the
    gather, ``embedding_bag`` or strided-conv forms: timings in benchmarks/README.md, "Measurement
    notes".
    The C++ kernel, where built (``native.py``), replaces all that for CPU float32/float64 tensors
    outside tracing and export: it samples channels-last, each point's corners and weights shared by
    its offset group's channels, and the columns meet the weight in a 1x1 convolution; it reads pixel
    coordinates directly, so zero offsets land exactly on the pixels. Gradients are first-order on
    either path (the kernel's sampling and product are one ``once_differentiable`` Function, and the
    grid_sample path's products but its deep one are too).
    Precision: on the grid_sample path, positions pass through grid_sample's normalization, so in
    float32 a sample lands within about size * 6e-8 pixels of where it should (exact in float64 to
    ~1e-15): at zero offsets the layer equals the plain convolution to ~1e-6 relative at 32 pixels,
    ~1e-5 at 224.
    """
    if input.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"expected 4-D input and weight, got {tuple(input.shape)} and {tuple(weight.shape)}")
    device = input.device.type
    if device in ("cpu", "cuda") and torch.is_autocast_enabled(device):
        # As in DeformConv2d.forward: positions are coordinates, which bf16 would move by a good fraction
        # of a pixel, so the function computes in float32 (float64 kept) whatever autocast says.
        dtype = torch.promote_types(input.dtype, torch.float32)
        with torch.autocast(device, enabled=False):
            x, o, w, b, m = (None if t is None else t.to(dtype) for t in (input, offset, weight, bias, mask))
            return deform_conv2d(x, o, w, b, stride, padding, dilation, m)  # type: ignore[arg-type]
    stride, padding, dilation = (
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
    )
    out_h, out_w, offset_groups = _output_shape(input, offset, weight, mask, stride, padding, dilation)
    n, channels, height, width = input.shape
    out_ch, group_ch, kh, kw = weight.shape
    taps, groups = kh * kw, channels // group_ch
    if _native_applies(input, offset, weight, mask):
        geometry = ((kh, kw), stride, padding, dilation)
        out = _native_deform_conv2d(input, offset, weight, mask, geometry)
        return out if bias is None else out + bias.view(1, -1, 1, 1)

    # Sampling grid: the regular grid plus the offsets, scaled to grid_sample's [-1, 1] (x first).
    base = _base_grid((height, width), (kh, kw), (out_h, out_w), stride, padding, dilation, offset)
    off = offset.reshape(n * offset_groups, taps, 2, out_h, out_w)
    grid = torch.stack((off[:, :, 1] * (2 / width), off[:, :, 0] * (2 / height)), dim=-1).add_(base)
    columns = F.grid_sample(
        input.reshape(n * offset_groups, channels // offset_groups, height, width),
        grid.view(n * offset_groups, taps * out_h, out_w, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (N*G, C/G, K*Hout, Wout): the columns, channel-major then tap, as weight.view(O, -1) reads them
    length = out_h * out_w
    if mask is None and group_ch * taps >= CONV_GEMM_MIN_DEPTH:
        # A deep product (C/groups*K in the thousands) as a 1x1 convolution: oneDNN's kernels, not BLAS.
        return F.conv2d(
            columns.view(n, channels * taps, out_h, out_w),
            weight.reshape(out_ch, group_ch * taps, 1, 1),
            bias,
            groups=groups,
        )
    w = weight.reshape(groups, out_ch // groups, group_ch * taps)
    if mask is None:
        out = _GroupedMatmul.apply(columns.view(n, groups, group_ch * taps, length), w)
    else:
        out = _ModulatedMatmul.apply(
            columns.view(n, offset_groups, channels // offset_groups, taps, length),
            mask.reshape(n, offset_groups, 1, taps, length),
            w,
        )
    out = out.reshape(n, out_ch, out_h, out_w)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class _DeformConv(torch.autograd.Function):
    """The columns sampled by the C++ kernel (``native.py``), channels-last: input (N, H, W, C) in,
    (N, Hout, Wout, groups*K*C/groups) out, each group's K*C/groups tap-major, the modulation applied as
    they are formed; then their product with the weight (O, K*C/groups, 1, 1) as a 1x1 convolution in
    oneDNN's kernels, which beat BLAS's matmul on these shapes (benchmarks/README.md). Backward, the
    kernel forms the columns' gradient an image at a time and scatters it at once, so that gradient,
    as large as the columns, is never held whole; the mask's gradient is recomputed from the input."""

    @staticmethod
    def forward(ctx, input, offset, mask, weight, geometry):
        columns = torch.ops.cnnlab.deform_sample(input, offset, mask, *geometry)
        ctx.geometry = geometry
        ctx.save_for_backward(input, offset, mask, weight, columns)
        return F.conv2d(columns.permute(0, 3, 1, 2), weight, groups=geometry[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        input, offset, mask, weight, columns = ctx.saved_tensors
        need_input, need_offset, need_mask, need_weight, _ = ctx.needs_input_grad
        grad = grad.permute(0, 2, 3, 1).contiguous()  # free when the output is channels-last
        grads = (None, None, None)
        if need_input or need_offset or need_mask:
            grads = torch.ops.cnnlab.deform_sample_backward(
                grad, weight.flatten(1), input, offset, mask, *ctx.geometry, need_input
            )
        grad_weight = None
        if need_weight:
            one = (1, 1)
            grad_weight = torch.ops.aten.convolution_backward(
                grad.permute(0, 3, 1, 2), columns.permute(0, 3, 1, 2), weight, None,
                one, (0, 0), one, False, (0, 0), ctx.geometry[-1], (False, True, False),
            )[1]  # fmt: skip
        needed = (need_input, need_offset, need_mask)
        return (*(g if need else None for g, need in zip(grads, needed, strict=True)), grad_weight, None)


_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # public from torch 2.3


def _native_applies(*tensors: torch.Tensor | None) -> bool:
    """Whether the C++ kernel takes these tensors: all on the CPU in one float dtype, and built. Never
    while tracing, compiling or exporting: an exported file holds standard ops only, so it loads and
    converts (ONNX) without this library."""
    given = [t for t in tensors if t is not None]
    return (
        native is not None
        and not (torch.jit.is_tracing() or _is_compiling())
        and all(t.device.type == "cpu" and t.dtype == given[0].dtype for t in given)
        and given[0].dtype in (torch.float32, torch.float64)
        and native.available()
    )


def _native_deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor | None,
    geometry: tuple[tuple[int, int], ...],
) -> torch.Tensor:
    """deform_conv2d without the bias through the C++ kernel: channels-last columns, then their product
    with the weight; the output keeps the input's memory format."""
    out_ch, group_ch, kh, kw = weight.shape
    groups = input.shape[1] // group_ch
    # The weight in the columns' order: (O, kh, kw, C/groups), as a 1x1 convolution's.
    w = weight.reshape(out_ch, group_ch, kh * kw).transpose(1, 2).reshape(out_ch, -1, 1, 1).contiguous()
    out = _DeformConv.apply(
        input.permute(0, 2, 3, 1).contiguous(),  # free when the input is channels-last
        offset.contiguous(),
        None if mask is None else mask.contiguous(),
        w,
        (*geometry, groups),
    )
    channels_last = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
    return out if channels_last else out.contiguous()


OFFSET_LR_SCALE = 0.1


class DeformConv2d(nn.Module):
    """Deformable convolution (Dai et al., "Deformable Convolutional Networks", ICCV 2017), and with
    ``modulated=True`` its DCNv2 form (Zhu et al., "Deformable ConvNets v2", CVPR 2019): a drop-in
    replacement for ``nn.Conv2d`` (same arguments, ``weight`` (O, C/groups, kh, kw) and ``bias``, same
    default initialization) that owns its offset branch.

    Children: ``offset``, a conv with the main conv's kernel, stride, padding and dilation on the same
    input, predicting 2 offsets (dy, dx) per tap per offset group in ``torchvision.ops.deform_conv2d``'s
    channel order (for each offset group, for each tap in row-major order, dy then dx); and, if
    modulated, ``mask``, a second such conv predicting one modulation scalar per tap per offset group.
    Both start at zero (weight and bias), so a new layer computes exactly the plain convolution.

    The offset and mask parameters carry ``lr_scale = 0.1``, which cnnlab's optimizer honours: the
    paper trains them at the full rate (beta = 1) when fine-tuning detectors, but from scratch at a
    ResNet learning rate full-rate offsets diverge (see benchmarks/README.md, "Measurement notes").

    Difference from DCNv2: the modulation is ``mask_scale * sigmoid(z)`` with ``mask_scale`` = 2, in
    (0, 2), instead of ``sigmoid(z)``, so the zero-initialized mask branch starts at exactly 1 (the plain
    convolution) rather than at 0.5. Set ``mask_scale = 1.0`` for DCNv2's own form (e.g. to use weights
    trained with it). A checkpoint whose offset conv is one 3K-channel conv (offsets, then masks) maps
    here by splitting it at channel 2K.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        offset_groups: int = 1,
        modulated: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels and out_channels")
        if in_channels % offset_groups:
            raise ValueError(f"offset_groups={offset_groups} must divide in_channels={in_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.groups, self.offset_groups, self.modulated = groups, offset_groups, modulated
        self.mask_scale = 2.0
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()  # before the branches: the same random draws as nn.Conv2d's
        taps = self.kernel_size[0] * self.kernel_size[1]
        branch = dict(kernel_size=self.kernel_size, stride=stride, padding=padding, dilation=dilation)
        self.offset = nn.Conv2d(in_channels, 2 * offset_groups * taps, **branch)
        self.mask = nn.Conv2d(in_channels, offset_groups * taps, **branch) if modulated else None
        for p in [*self.offset.parameters(), *(self.mask.parameters() if self.mask is not None else [])]:
            # Full-rate offsets run away when trained from scratch at a ResNet learning rate
            # (benchmarks/README.md, "Measurement notes"); the optimizer gives them a tenth of it.
            p.lr_scale = OFFSET_LR_SCALE  # type: ignore[attr-defined]
        self.reset_offsets()

    def reset_parameters(self) -> None:
        """The main weight and bias as ``nn.Conv2d.reset_parameters`` draws them."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def reset_offsets(self) -> None:
        """Zero the offset (and mask) branch: the layer then computes the plain convolution."""
        for conv in (self.offset, self.mask):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def offsets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The offsets (N, 2*G*K, Hout, Wout) and modulation (N, G*K, Hout, Wout) or None, for ``x``:
        what the layer samples with, for analyses that draw the deformed grid."""
        mask = self.mask_scale * torch.sigmoid(self.mask(x)) if self.mask is not None else None
        return self.offset(x), mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Sampling positions are coordinates: in bf16 (3 significant digits) they would wander by a
        # good fraction of a pixel, so the whole layer runs in fp32 whatever autocast says.
        # (autocast exists for cpu and cuda only; the meta device, used to count and trace, has none)
        no_autocast = (
            torch.autocast(x.device.type, enabled=False)
            if x.device.type in ("cpu", "cuda")
            else nullcontext()
        )
        with no_autocast:
            x = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 up, float64 kept
            offset, mask = self.offsets(x)
            return deform_conv2d(
                x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask
            )

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.offset_groups != 1:
            s += f", offset_groups={self.offset_groups}"
        if self.modulated:
            s += ", modulated=True"
        return s + ("" if self.bias is not None else ", bias=False")
