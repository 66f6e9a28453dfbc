"""Where a deformable network looks: the sampling locations of its deformable convolutions for chosen
output units, drawn over the input image, as in Dai et al., "Deformable Convolutional Networks" (ICCV
2017), Fig. 5 and 7.

A 3x3 deformable conv reads its input at nine positions per output unit, the regular grid p0 + pn
shifted by learned offsets delta_pn (``cnnlab.layers.DeformConv2d``). Take a unit of the top deformable
layer: its nine positions lie on the output map of the deformable layer below (the layers in between,
BN, ReLU, 1x1 convs and identity shortcuts, keep positions), where each again samples nine positions,
and so on: L deformable layers give 9^L points, which the receptive-field start and jump of the bottom
layer's input map place on the image. With zero offsets the same recursion gives the plain network's
regular grid. Samples of an upper layer land between the units of the layer below; they take that
layer's offsets bilinearly interpolated (``DeformLayer.offsets_at``).

The paper's finding: the learned points spread with the object (wider on large objects, tight on
small ones) instead of keeping one square shape. ``spread`` measures that: the root mean square
distance of the 9^L points from their centroid, learned against regular.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CnnlabError
from ..layers import DeformConv2d
from ..plots import pyplot
from .output import DEFAULT_OUT, write_outputs
from .rf import RF, ReceptiveFieldMode


@dataclass
class DeformLayer:
    """One deformable conv as one forward pass saw it: its geometry, the offsets it predicted
    (2*K, Hout, Wout: dy, dx per tap in row-major order), its output, and where its input and output
    maps lie on the image (receptive-field start and jump, in image pixels)."""

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    offsets: torch.Tensor
    output: torch.Tensor
    in_size: tuple[int, int]
    rf_in: RF
    rf_out: RF

    @property
    def out_size(self) -> tuple[int, int]:
        return int(self.offsets.shape[1]), int(self.offsets.shape[2])

    def taps(self) -> torch.Tensor:
        """The regular grid's tap positions pn relative to p0, (K, 2) as (dy, dx), row-major as the
        offsets are ordered."""
        ys = torch.arange(self.kernel[0], dtype=torch.float64) * self.dilation[0]
        xs = torch.arange(self.kernel[1], dtype=torch.float64) * self.dilation[1]
        return torch.cartesian_prod(ys, xs)

    def offsets_at(self, positions: torch.Tensor) -> torch.Tensor:
        """The offsets (P, K, 2) at output positions (P, 2) (y, x; fractional allowed).

        A fractional position (a sample of the layer above, landing between this layer's units) takes
        the offsets bilinearly interpolated between the four nearest units, and a position past the
        map's edge those of the nearest edge unit ("border"): the sample there reads zero padding and
        has no unit of its own, so this is a convention for drawing, not what the network computes.
        """
        h, w = self.out_size
        # grid_sample's align_corners=False coordinates, as DeformConv2d uses: unit i at (2i+1)/n - 1
        grid = torch.stack(
            ((2 * positions[:, 1] + 1) / w - 1, (2 * positions[:, 0] + 1) / h - 1), dim=-1
        ).view(1, 1, -1, 2)
        field = self.offsets.to(torch.float64).unsqueeze(0)  # (1, 2K, H, W)
        sampled = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.view(-1, 2, positions.shape[0]).permute(2, 0, 1)  # (P, K, 2)

    def sample(self, positions: torch.Tensor, learned: bool = True) -> torch.Tensor:
        """The input-map positions (P*K, 2) that output positions (P, 2) read: p0*stride - padding + pn
        + delta_pn (the ``_base_grid`` of ``DeformConv2d`` plus its offsets), point-major then tap;
        with ``learned=False`` the zero-offset regular grid."""
        stride = torch.tensor(self.stride, dtype=torch.float64)
        padding = torch.tensor(self.padding, dtype=torch.float64)
        grid = (positions * stride - padding)[:, None, :] + self.taps()[None]  # (P, K, 2)
        if learned:
            grid = grid + self.offsets_at(positions)
        return grid.reshape(-1, 2)


def capture_deform_layers(model: nn.Module, x: torch.Tensor) -> list[DeformLayer]:
    """Run ``model`` (in eval mode) on ``x`` (a batch of one) and return its deformable convs in
    execution order, each with the offsets it predicted for this input and the receptive field of its
    input and output. A modulated (DCNv2) layer's mask weights its samples but does not move them, so
    it plays no part here."""
    mode = ReceptiveFieldMode(x)
    names = {m: n for n, m in model.named_modules()}
    captured: list[DeformLayer] = []
    inputs: dict[nn.Module, tuple[RF, tuple[int, int]]] = {}
    offsets: dict[nn.Module, torch.Tensor] = {}

    def before(module: nn.Module, args: tuple) -> None:
        inputs[module] = mode.state[args[0]], tuple(args[0].shape[-2:])

    def offset_out(parent: nn.Module, _module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        # The offsets conv's own output is exactly what the layer samples with: no recomputation.
        offsets[parent] = out.detach()[0]

    def after(module: Any, _args: tuple, out: torch.Tensor) -> None:
        if module.offset_groups != 1:
            raise CnnlabError(
                f"{names[module]} has {module.offset_groups} offset groups: one set of sampling points "
                "per unit is drawn only for offset_groups=1, as in the paper"
            )
        rf_in, in_size = inputs.pop(module)
        captured.append(
            DeformLayer(
                names[module], module.kernel_size, module.stride, module.padding, module.dilation,
                offsets.pop(module), out.detach()[0], in_size, rf_in, mode.state[out],
            )
        )  # fmt: skip

    handles = mode.watch(model)  # first: ``after`` must see the deformable conv's corrected RF
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            handles += [
                m.register_forward_pre_hook(before),
                m.offset.register_forward_hook(lambda mod, a, o, parent=m: offset_out(parent, mod, a, o)),
                m.register_forward_hook(after),
            ]
    try:
        with torch.no_grad(), mode:
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def check_chain(layers: list[DeformLayer]) -> None:
    """Positions compose only if each layer's input map is the previous one's output map, reached
    through pointwise layers: same size, same receptive field, start and jump."""
    for below, above in itertools.pairwise(layers):
        a, b = above.rf_in, below.rf_out
        if above.in_size != below.out_size or (a.rf, a.jump, a.start) != (b.rf, b.jump, b.start):
            raise CnnlabError(
                f"{above.name} does not read {below.name}'s output map position by position (a conv or "
                "pool lies between them); analyse fewer --layers"
            )


def compose(layers: list[DeformLayer], point: tuple[int, int], learned: bool = True) -> torch.Tensor:
    """The 9^L image-pixel positions (N, 2) (y, x) that the unit at ``point`` of the top layer's output
    reads through all ``layers`` (bottom to top), following each sample down to the layer below."""
    positions = torch.tensor([point], dtype=torch.float64)
    for layer in reversed(layers):
        # On this layer's input map, which ``check_chain`` made the output map of the layer below.
        positions = layer.sample(positions, learned)
    return to_image(positions, layers[0].rf_in)


def to_image(positions: torch.Tensor, rf: RF) -> torch.Tensor:
    """Map positions (N, 2) on a feature map to image pixels (pixel i's centre at i) by its RF."""
    start, jump = (torch.tensor(v, dtype=torch.float64) for v in (rf.start, rf.jump))
    return start + positions * jump


def _spread(points: torch.Tensor) -> float:
    """Root mean square distance of the points from their centroid, in pixels."""
    return float((points - points.mean(0)).pow(2).sum(1).mean().sqrt())


def _default_points(top: DeformLayer) -> dict[tuple[int, int], str]:
    """The top layer's units of strongest activation (the norm over channels of the conv's output), the
    centre and of weakest activation, each with why it was chosen: on a digit, the strongest is usually
    on the stroke, the weakest on background."""
    h, w = top.out_size
    energy = top.output.double().norm(dim=0).flatten()
    chosen: dict[tuple[int, int], str] = {}
    for point, why in (
        (divmod(int(energy.argmax()), w), "strongest activation"),
        ((h // 2, w // 2), "centre"),
        (divmod(int(energy.argmin()), w), "weakest activation"),
    ):
        chosen.setdefault(point, why)  # a unit that is both keeps its first reason
    return chosen


def _layer_offsets(layers: list[DeformLayer], point: tuple[int, int]) -> list[dict[str, float]]:
    """The mean offset length at each layer over the samples of ``point``'s tree that pass through it,
    in that layer's input-map pixels and in image pixels."""
    rows = []
    positions = torch.tensor([point], dtype=torch.float64)
    for layer in reversed(layers):
        off = layer.offsets_at(positions)  # (P, K, 2)
        jump = torch.tensor(layer.rf_in.jump, dtype=torch.float64)
        rows.append({
            "layer": layer.name,
            "mean_offset_map_px": float(off.norm(dim=-1).mean()),
            "mean_offset_image_px": float((off * jump).norm(dim=-1).mean()),
        })  # fmt: skip
        positions = layer.sample(positions)
    return rows[::-1]  # bottom to top, as ``layers``


# 9^L points per unit: 4 layers already give 6,561 dots per unit (and as many [y, x] pairs in the JSON);
# 5 or 6 would give 59,049 or 531,441, an unreadable blot and a JSON of tens of megabytes.
MAX_LAYERS = 4


def offset_study(
    model: nn.Module, x: torch.Tensor, points: list[tuple[int, int]] | None = None, layers: int = 3
) -> dict[str, Any]:
    """The numbers of the analysis for a model and one normalized image (1, C, H, W); ``points`` are
    (y, x) units of the top deformable layer's output (default ``_default_points``)."""
    found = capture_deform_layers(model, x)
    if not found:
        raise CnnlabError("the model has no deformable convolutions; analyse a run of a dcn_* model")
    most = min(len(found), MAX_LAYERS)
    if not 1 <= layers <= most:
        raise CnnlabError(
            f"--layers must be 1..{most} (of the model's {len(found)} deformable convs), got {layers}"
        )
    chain = found[-layers:]
    check_chain(chain)
    top = chain[-1]
    h, w = top.out_size
    labelled = _default_points(top) if points is None else {(int(y), int(x)): "chosen" for y, x in points}
    for p in labelled:
        if not (0 <= p[0] < h and 0 <= p[1] < w):
            raise CnnlabError(
                f"point {p[0]},{p[1]} is off the {h}x{w} output map of {top.name}: use 0..{h - 1},0..{w - 1}"
            )
    image_h, image_w = x.shape[-2:]
    rows = []
    for p, why in labelled.items():
        learned, regular = compose(chain, p), compose(chain, p, learned=False)
        unit = to_image(torch.tensor([p], dtype=torch.float64), top.rf_out)[0]
        inside = (learned[:, 0] >= -0.5) & (learned[:, 0] <= image_h - 0.5)
        inside &= (learned[:, 1] >= -0.5) & (learned[:, 1] <= image_w - 0.5)
        spread, plain = _spread(learned), _spread(regular)
        rows.append({
            "point": list(p),
            "why": why,
            "point_px": [round(v, 3) for v in unit.tolist()],
            "layers": _layer_offsets(chain, p),
            "spread_px": spread,
            "regular_spread_px": plain,
            "spread_ratio": spread / plain,
            "mean_shift_px": float((learned - regular).norm(dim=1).mean()),
            # Where the cloud as a whole moved: toward the object, or away from the image edge?
            "centroid_shift_px": [round(v, 3) for v in (learned.mean(0) - regular.mean(0)).tolist()],
            "outside_image": float(1 - inside.double().mean()),
            "sampled": [[round(v, 2) for v in row] for row in learned.tolist()],
            "regular": [[round(v, 2) for v in row] for row in regular.tolist()],
        })  # fmt: skip
    layer_rows = []
    for layer in chain:
        # Over every unit and tap of the map, for this image: (2K, H, W) -> (H, W, K, 2)
        field = layer.offsets.double().unflatten(0, (-1, 2)).permute(2, 3, 0, 1)
        jump = torch.tensor(layer.rf_in.jump, dtype=torch.float64)
        layer_rows.append({
            "name": layer.name,
            "input_stride": layer.rf_in.stride,  # image pixels between neighbouring input-map pixels
            "output_stride": layer.rf_out.stride,
            "output_size": list(layer.out_size),
            "mean_offset_map_px": float(field.norm(dim=-1).mean()),
            "mean_offset_image_px": float((field * jump).norm(dim=-1).mean()),
        })  # fmt: skip
    return {"layers": layer_rows, "samples_per_point": len(rows[0]["sampled"]), "points": rows}


# Bright dots that read on black background and on the dimmed grey strokes alike; the unit is lime.
COLOURS = ("#ff453a", "#40c8ff", "#ffd60a", "#ff6bd6", "#ff9f0a", "#bf5af2")


def plot_offsets(result: dict[str, Any], image: torch.Tensor) -> Any:
    """One column per point: the learned sampling points over the image (top) and the regular grid the
    same unit reads with zero offsets (bottom), every panel on the same scale."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    points = result["points"]
    n = len(points)
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n + 0.5, 7.9), squeeze=False, layout="constrained")
    picture = image.permute(1, 2, 0).float() if image.shape[0] == 3 else image[0].float()
    # Dimmed, so that dots stay visible on white strokes; pixel i's centre at i, as the positions.
    picture = (picture * 0.6).numpy()
    h, w = picture.shape[:2]
    every = torch.tensor([yx for p in points for key in ("sampled", "regular") for yx in p[key]])
    lo = torch.minimum(every.min(0).values, torch.tensor([-0.5, -0.5])) - 1.5
    hi = torch.maximum(every.max(0).values, torch.tensor([h - 0.5, w - 0.5])) + 1.5
    for col, p in enumerate(points):
        colour = COLOURS[col % len(COLOURS)]
        for row, key in enumerate(("sampled", "regular")):
            ax = axes[row, col]
            ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
            ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="0.55", linewidth=0.8))
            # The regular grid reads few distinct pixels many times: one dot each, area by count.
            where, count = torch.tensor(p[key]).unique(dim=0, return_counts=True)
            size = 6 * count if key == "regular" else 6
            ax.scatter(where[:, 1], where[:, 0], s=size, color=colour, alpha=0.55, linewidths=0)
            uy, ux = p["point_px"]
            if key == "sampled":  # the centroid of the learned points: how the field as a whole moved
                cy, cx = torch.tensor(p[key]).mean(0).tolist()
                ax.plot([cx], [cy], "P", markersize=11, color="white", markeredgecolor="black", mew=0.8)
            ax.plot([ux], [uy], "o", markersize=11, markerfacecolor="none", markeredgecolor="lime", mew=2.4)
            ax.set(xlim=(lo[1], hi[1]), ylim=(hi[0], lo[0]), xticks=[], yticks=[], facecolor="#161616")
        shifts = " / ".join(f"{lay['mean_offset_image_px']:.1f}" for lay in p["layers"])
        dy, dx = p["centroid_shift_px"]
        axes[0, col].set_title(
            f"{p['why']}: unit ({p['point'][0]}, {p['point'][1]}), at {uy:g}, {ux:g} px\n"
            f"mean offset {shifts} px\n"
            f"spread {p['spread_px']:.1f} px = {p['spread_ratio']:.2f} x regular\n"
            f"centroid (+) moved {dy:+.1f}, {dx:+.1f} px",
            fontsize=9,
        )
        axes[1, col].set_title(
            f"zero offsets: spread {p['regular_spread_px']:.1f} px\n(dot area: reads of that pixel)",
            fontsize=9,
        )
    axes[0, 0].set_ylabel("learned offsets", fontsize=10)
    axes[1, 0].set_ylabel("regular grid", fontsize=10)
    names = [lay["name"] for lay in result["layers"]]
    per_layer = " / ".join(f"{lay['mean_offset_image_px']:.2f}" for lay in result["layers"])
    fig.suptitle(
        f"{result['model']}: the {result['samples_per_point']} points a unit (lime) samples through "
        f"{len(names)} deformable layers\n{' / '.join(names)} (offsets listed bottom to top, in image px); "
        f"mean offset over the whole maps {per_layer}",
        fontsize=10,
    )
    return fig


def analyze_offsets(
    run_dir: str | os.PathLike[str],
    image: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    points: list[tuple[int, int]] | None = None,
    layers: int = 3,
) -> dict[str, Any]:
    """Write offsets.json and offsets.png for a trained deformable model's run and one image file;
    ``points`` are (y, x) units of the top deformable layer's output map."""
    from ..predict import load_image
    from ..rundir import load_run, read_config

    config = read_config(run_dir)
    model = load_run(run_dir)
    if not any(isinstance(m, DeformConv2d) for m in model.modules()):
        raise CnnlabError(
            f"{run_dir} holds a {config.model}, which has no deformable convolutions; "
            "analyse a run of a dcn_* model"
        )
    picture, x = load_image(image, model.data_config)  # type: ignore[arg-type]
    study = offset_study(model, x, points, layers)
    result = {"run": str(run_dir), "model": config.model, "image": str(image), **study}
    result["files"] = write_outputs(out_dir, "offsets", result, plot_offsets(result, picture))
    return result
