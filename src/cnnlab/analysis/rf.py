"""Receptive fields: the theoretical one, computed analytically through every op a model runs, and the
effective one (Luo, Li, Urtasun and Zemel, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks", NeurIPS 2016): the gradient of a centre output unit w.r.t. the input.

The theoretical receptive field is tracked per tensor by a ``TorchDispatchMode`` that sees every aten
op of a forward pass (on the meta device, so it costs nothing), whatever the model's Python control
flow: branches, concatenations, residual additions and squeeze-and-excitation gates need no special
code. Each tensor carries ``(rf, jump, start)`` per spatial axis: a conv or pool of kernel k, stride s
and dilation d maps it to ``rf + d (k - 1) jump`` and ``jump s``; any other op takes the largest over
its inputs. A global pool, an adaptive pool that changes the map's size, or a flatten ends spatial
tracking: the result keeps the receptive field of the feature map it came from (so an SE gate, pooled
over the whole map, adds nothing: the convention of the papers), and the model's receptive field is
the one its output carries, i.e. that of the last spatial feature map before global pooling or the
classifier. Deformable convs are counted at their nominal (zero-offset) sampling grid.

``analyze_rf`` puts both together for one model, with the VGG comparison of three 3x3 convs against
one 7x7, and writes rf.json and rf.png.
"""

from __future__ import annotations

import copy
import math
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

from ..errors import CnnlabError, InputSizeError
from ..plots import pyplot
from .output import DEFAULT_OUT, write_outputs

aten = torch.ops.aten


@dataclass(frozen=True)
class RF:
    """Receptive field (input pixels), jump (input pixels between neighbouring units) and start (the
    input coordinate of the centre of unit 0's field), per axis (H, W)."""

    rf: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float] = (0.0, 0.0)
    spatial: bool = True  # False once pooled globally or flattened

    @property
    def size(self) -> int:
        """The side of the receptive field (the larger axis if they differ)."""
        return math.ceil(max(self.rf))

    @property
    def stride(self) -> int:
        return math.ceil(max(self.jump))


def _pair(v: Any, default: Any = None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    if isinstance(v, int):
        return v, v
    v = tuple(v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _window(
    state: RF,
    kernel: tuple[int, int],
    stride: tuple[float, float],
    dilation: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> RF:
    rf, jump, start = [], [], []
    for a in range(2):
        span = dilation[a] * (kernel[a] - 1)
        rf.append(state.rf[a] + span * state.jump[a])
        jump.append(state.jump[a] * stride[a])
        start.append(state.start[a] + (span / 2 - padding[a]) * state.jump[a])
    return RF(tuple(rf), tuple(jump), tuple(start))  # type: ignore[arg-type]


class ReceptiveFieldMode(TorchDispatchMode):
    """Propagates an ``RF`` through every op; ``state[t]`` is the RF of tensor ``t`` (if it depends on
    the input). ``ended`` holds the last spatial tensor whose tracking a pool or flatten ended."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.state: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        self.state[x] = RF((1, 1), (1, 1))
        self.ended: torch.Tensor | None = None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tracked = [
            (a, self.state[a])
            for a in tree_leaves((args, kwargs))
            if isinstance(a, torch.Tensor) and a in self.state
        ]
        if not tracked:
            return out
        new = self._propagate(func.overloadpacket, args, tracked, out)
        for o in tree_leaves(out):
            if isinstance(o, torch.Tensor) and o.is_floating_point():
                self.state[o] = new
        return out

    def _propagate(self, op: Any, args: tuple, tracked: list[tuple[torch.Tensor, RF]], out: Any) -> RF:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        s = self.state.get(first) if first is not None and first in self.state else None
        if s is not None and s.spatial and first is not None and first.dim() == 4:
            if op is aten.convolution and not args[6]:  # not transposed
                return _window(s, tuple(args[1].shape[2:]), _pair(args[3]), _pair(args[5]), _pair(args[4]))
            if op in (aten.max_pool2d_with_indices, aten.max_pool2d):
                k = _pair(args[1])
                stride = _pair(args[2] if len(args) > 2 else None, k)
                padding = _pair(args[3] if len(args) > 3 else 0)
                dilation = _pair(args[4] if len(args) > 4 else 1)
                return _window(s, k, stride, dilation, padding)
            if op is aten.avg_pool2d:
                k = _pair(args[1])
                stride = _pair(args[2] if len(args) > 2 else None, k)
                return _window(s, k, stride, (1, 1), _pair(args[3] if len(args) > 3 else 0))
            if op in (aten._adaptive_avg_pool2d, aten.adaptive_max_pool2d):
                # The identity when the size is kept (VGG's and AlexNet's 7x7 / 6x6 at 224x224); any
                # other adaptive pool (global, or resampling a small map) ends the spatial map.
                return s if tuple(first.shape[-2:]) == _pair(args[1]) else self._end(first, s)
            if op is aten.slice and len(args) > 1 and args[1] in (2, 3, -2, -1):  # crop / subsample
                axis = 0 if args[1] in (2, -2) else 1
                first_index = args[2] if len(args) > 2 and args[2] is not None else 0
                if first_index < 0:
                    first_index += first.shape[2 + axis]
                jump, start = list(s.jump), list(s.start)
                start[axis] += first_index * jump[axis]
                jump[axis] *= args[4] if len(args) > 4 else 1
                return RF(s.rf, tuple(jump), tuple(start))  # type: ignore[arg-type]
            if op is aten.constant_pad_nd:  # (left, right, top, bottom, ...): shifts unit 0
                pad = list(args[1]) + [0] * 4
                start = (s.start[0] - pad[2] * s.jump[0], s.start[1] - pad[0] * s.jump[1])
                return RF(s.rf, s.jump, start)
        spatial = [(t, st) for t, st in tracked if st.spatial]
        if spatial:
            widest = max(spatial, key=lambda ts: max(ts[1].rf))[1]
            merged = RF(
                tuple(max(st.rf[i] for _, st in spatial) for i in range(2)),  # type: ignore[arg-type]
                tuple(max(st.jump[i] for _, st in spatial) for i in range(2)),  # type: ignore[arg-type]
                widest.start,
            )
            o = next((o for o in tree_leaves(out) if isinstance(o, torch.Tensor)), None)
            t = max(spatial, key=lambda ts: max(ts[1].rf))[0]
            # A reduction over the spatial axes (mean, flatten, view): the map ends here.
            if o is None or o.dim() < 3 or tuple(o.shape[-2:]) != tuple(t.shape[-2:]):
                return self._end(t, merged)
            return merged
        return RF(
            tuple(max(st.rf[i] for _, st in tracked) for i in range(2)),  # type: ignore[arg-type]
            tuple(max(st.jump[i] for _, st in tracked) for i in range(2)),  # type: ignore[arg-type]
            max(tracked, key=lambda ts: max(ts[1].rf))[1].start,
            spatial=False,
        )

    def _end(self, t: torch.Tensor, s: RF) -> RF:
        self.ended = t
        return RF(s.rf, s.jump, s.start, spatial=False)

    def watch(self, model: nn.Module) -> list[Any]:
        """Hooks that give each deformable conv of ``model`` the receptive field of its nominal (zero
        offset) sampling grid: its bilinear sampling is a gather the op rules cannot see through.
        Returns the handles, to be removed after the forward pass."""
        from ..layers import DeformConv2d

        handles, inputs = [], {}

        def before(module: nn.Module, args: tuple) -> None:
            inputs[module] = self.state.get(args[0]) if args[0] in self.state else None

        def after(module: Any, _args: tuple, out: torch.Tensor) -> None:
            s = inputs.pop(module)
            if s is not None and s.spatial:
                k, st, d, p = module.kernel_size, module.stride, module.dilation, module.padding
                self.state[out] = _window(s, k, st, d, p)

        for m in model.modules():
            if isinstance(m, DeformConv2d):
                handles += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
        return handles


def layer_receptive_fields(
    model: nn.Module,
    input_size: tuple[int, int, int],
    device: str | torch.device = "meta",
    *modes: Any,
) -> tuple[dict[str, RF], RF | None]:
    """The RF of each leaf module's output (by module name) and the model's RF (its output's, None if
    it has no spatial extent), from one forward pass of a batch of one in eval mode. Further dispatch
    ``modes`` (a FLOP counter, say) watch the same pass."""
    per_layer: dict[str, RF] = {}
    names = {m: n for n, m in model.named_modules()}
    x = torch.zeros(1, *input_size, device=device)
    mode = ReceptiveFieldMode(x)

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, torch.Tensor) and out in mode.state:
            per_layer[names[module]] = mode.state[out]

    hooks = mode.watch(model)  # before ``record``, which must see the corrected state
    hooks += [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            for extra in modes:
                stack.enter_context(extra)
            stack.enter_context(mode)
            out = model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    out = out[0] if isinstance(out, tuple) else out
    return per_layer, mode.state.get(out)


def receptive_field(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """The side, in input pixels, of the receptive field of the model's last spatial feature map."""
    final = layer_receptive_fields(model, input_size)[1]
    if final is None:
        raise ValueError("the model's output has no receptive field to report")
    return final.size


def effective_receptive_field(
    model: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, RF, tuple[int, int], tuple[int, int]]:
    """|d (sum over channels of the centre unit of the last spatial feature map) / d input|, summed over
    input channels and averaged over ``images`` (N, C, H, W, float, normalized); returns the (H, W) map,
    the theoretical RF of that feature map, the centre unit's (row, col) in it and the map's (H, W)."""
    x = images.detach().clone().requires_grad_(True)
    mode = ReceptiveFieldMode(x)
    hooks = mode.watch(model)
    try:
        with mode:
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    fmap = mode.ended
    if fmap is None or fmap.dim() != 4:
        raise ValueError("the model has no spatial feature map that is pooled or flattened")
    rf = mode.state[fmap]
    ci, cj = fmap.shape[2] // 2, fmap.shape[3] // 2
    (grad,) = torch.autograd.grad(fmap[:, :, ci, cj].sum(), x)
    return grad.abs().sum(1).mean(0), rf, (ci, cj), (fmap.shape[2], fmap.shape[3])


def rf_window(rf: RF, unit: tuple[int, int]) -> tuple[float, float, float, float]:
    """The (top, left, height, width) in input pixels of the theoretical RF of ``unit`` (row, col); it
    may reach past the image, where the padding is."""
    top, left = (rf.start[a] + unit[a] * rf.jump[a] - (rf.rf[a] - 1) / 2 for a in range(2))
    return top, left, rf.rf[0], rf.rf[1]


def vgg_comparison(channels: int = 64) -> dict[str, Any]:
    """Three stacked 3x3 convs vs one 7x7 (Simonyan and Zisserman 2015, Section 2.3), both built and
    measured: the same 7-pixel receptive field with 27 C^2 instead of 49 C^2 weights."""
    c = channels
    stacks = {
        "3x3 x3": nn.Sequential(*(nn.Conv2d(c, c, 3, bias=False) for _ in range(3))),
        "7x7 x1": nn.Conv2d(c, c, 7, bias=False),
    }
    rows = []
    for name, m in stacks.items():
        m = m.to("meta")
        weights = sum(p.numel() for p in m.parameters())
        rows.append(
            {
                "stack": name,
                "channels": c,
                "weights": weights,
                "weights_per_c2": weights / c**2,
                "receptive_field": receptive_field(m, (c, 15, 15)),
            }
        )
    return {"channels": c, "stacks": rows}


def _images(
    data: str | None, n: int, input_size: tuple[int, int, int], run_dir: str | None = None
) -> tuple[torch.Tensor, str]:
    """``n`` normalized test images: of a run's dataset (or ``data``) as the run saw them, of ``data``
    resized to ``input_size``, or standard normal noise when there is neither."""
    c, h, w = input_size
    if run_dir is not None:
        from ..predict import run_dataset
        from ..rundir import read_config

        ds = run_dataset(run_dir, data)
        cfg = read_config(run_dir).data
        mean, std = cfg.mean, cfg.std
    elif data is None:
        return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0)), "noise"
    else:
        from ..data import load

        ds = load(data)
        mean, std = ds.mean, ds.std
    x = ds.test_images[:n].float() / 255
    if tuple(x.shape[-2:]) != (h, w):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    if x.shape[1] != c:  # e.g. grey digits into a 3-channel model
        x = x.mean(1, keepdim=True).expand(-1, c, -1, -1).contiguous()
    return x, ds.name


def _rf_model(
    model_name: str, input_size: tuple[int, int, int] | None, seed: int, run_dir: str | None
) -> tuple[nn.Module, tuple[int, int, int], str]:
    """The model to measure, the input size it takes and a label saying which weights it has."""
    from ..models import check_input_size, create_model

    if run_dir is not None:
        from ..rundir import load_run

        model = load_run(run_dir)
        cfg = model.data_config  # type: ignore[attr-defined]
        if input_size is not None and list(input_size) != cfg.input_size:
            raise InputSizeError(f"the model of {run_dir} takes {'x'.join(map(str, cfg.input_size))} images")
        return model, tuple(cfg.input_size), f"{cfg.name}-trained {model_name}"  # type: ignore[return-value]
    torch.manual_seed(seed)
    with torch.device("meta"):
        probe = create_model(model_name, in_chans=input_size[0] if input_size else 3)
    input_size = input_size or probe.default_input_size
    check_input_size(probe, model_name, input_size)  # before building the real, possibly large, model
    model = create_model(model_name, in_chans=input_size[0])
    return model, input_size, f"freshly initialized {model_name}"


def analyze_rf(
    model_name: str,
    input_size: tuple[int, int, int] | None = None,
    data: str | None = None,
    images: int = 8,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    seed: int = 0,
    channels: int = 64,
) -> dict[str, Any]:
    """Receptive fields of ``model_name`` (a registered model, freshly initialized with ``seed``, or a
    run directory, whose trained weights, input size and dataset are used); writes rf.json and rf.png."""
    from .costs import model_costs

    if images < 1:
        raise CnnlabError(f"--images must be at least 1, got {images}")
    run_dir = model_name if Path(model_name).is_dir() else None
    model, input_size, label = _rf_model(model_name, input_size, seed, run_dir)

    # Costs and theoretical RFs on a meta copy: shapes only, no compute.
    costs = model_costs(copy.deepcopy(model).to("meta"), input_size)
    layers = [
        {"name": name, "receptive_field": c["rf"].size, "stride": c["rf"].stride, "macs": c["macs"]}
        for name, c in costs["layers"].items()
        if c["rf"].spatial
    ]
    x, source = _images(data, images, input_size, run_dir)
    erf, rf, centre, fmap_hw = effective_receptive_field(model, x.to(next(model.parameters()).device))
    erf = erf.detach().cpu()
    unit_px = (rf.start[0] + centre[0] * rf.jump[0], rf.start[1] + centre[1] * rf.jump[1])
    result = {
        "model": model_name,
        "weights": label,
        "input": list(input_size),
        "receptive_field": rf.size,
        "stride": rf.stride,
        "macs": costs["macs"],
        "feature_map": list(fmap_hw),
        "centre_unit": list(centre),
        "centre_unit_px": list(unit_px),
        "effective": {
            "images": source,
            "count": int(x.shape[0]),
            "half_mass_side": _half_mass_side(erf, unit_px),
        },
        "layers": layers,
        "vgg": vgg_comparison(channels),
    }
    window = rf_window(rf, centre)
    fig = _plot_erf(erf, window, result)
    result["files"] = write_outputs(out_dir, "rf", result, fig)
    return result


def _half_mass_side(erf: torch.Tensor, centre: tuple[float, float]) -> int:
    """The side of the smallest square around ``centre`` (the unit's position in input pixels) that
    holds half the ERF's mass: how much smaller the effective RF is than the theoretical one."""
    h, w = erf.shape
    cy, cx = centre
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dist = torch.maximum((yy - cy).abs(), (xx - cx).abs()).flatten()  # Chebyshev: squares
    order = dist.argsort()
    mass = erf.flatten()[order].double().cumsum(0)
    i = int(torch.searchsorted(mass, mass[-1] / 2))
    return int(2 * dist[order][min(i, len(order) - 1)].floor().item() + 1)


def _plot_erf(erf: torch.Tensor, window: tuple[float, float, float, float], result: dict[str, Any]) -> Any:
    plt = pyplot()
    from matplotlib.patches import Rectangle

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained", width_ratios=(1, 1))
    im = ax.imshow((erf / erf.max().clamp_min(1e-30)).numpy(), cmap="inferno", vmin=0)
    top, left, height, width = window
    ax.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5),
            width,
            height,
            fill=False,
            edgecolor="cyan",
            linewidth=1.5,
            label=f"theoretical RF {result['receptive_field']}x{result['receptive_field']}",
        )
    )
    h, w = erf.shape
    cy, cx = result["centre_unit_px"]
    ax.plot([cx], [cy], "+", color="cyan", markersize=10)
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="gray", linestyle=":", label="input"))
    margin = 0.04 * max(h, w, height, width)
    ax.set_xlim(min(-0.5, left - 0.5) - margin, max(w - 0.5, left + width - 0.5) + margin)
    ax.set_ylim(max(h - 0.5, top + height - 0.5) + margin, min(-0.5, top - 0.5) - margin)
    ax.set_facecolor("#e8e8e8")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="|d centre unit / d input|, relative to its maximum")
    e = result["effective"]
    ax.set_title(
        f"{result['model']}: effective RF of the centre unit of the\nlast {result['feature_map'][0]}x"
        f"{result['feature_map'][1]} map ({e['count']} {e['images']} images; "
        f"half mass in {e['half_mass_side']} px)",
        fontsize=9,
    )
    layers = [lay for lay in result["layers"] if lay["stride"] is not None]
    bx.step(
        range(len(layers)), [lay["receptive_field"] for lay in layers], where="post", label="receptive field"
    )
    bx.step(range(len(layers)), [lay["stride"] for lay in layers], where="post", label="stride (jump)")
    bx.set_yscale("log")
    bx.set_xlabel("leaf layers in execution order (dips: side branches)")
    bx.set_ylabel("input pixels")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend()
    v = result["vgg"]["stacks"]
    bx.set_title(
        f"theoretical RF per layer; VGG: {v[0]['stack']} = {v[0]['weights_per_c2']:g}C² weights, RF "
        f"{v[0]['receptive_field']}\nvs {v[1]['stack']} = {v[1]['weights_per_c2']:g}C², "
        f"RF {v[1]['receptive_field']}",
        fontsize=9,
    )
    return fig
