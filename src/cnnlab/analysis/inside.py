"""What a trained CNN looks at and what it has learned, three ways.

* ``cam``: where in an image the evidence for a class lies. Grad-CAM (Selvaraju et al., "Grad-CAM:
  Visual Explanations from Deep Networks via Gradient-based Localization", ICCV 2017) weighs each
  channel k of a layer's activation A by alpha_k, the gradient of the class score y_c averaged over
  the map, and keeps the positive part of sum_k alpha_k A_k. It generalises CAM (Zhou et al.,
  "Learning Deep Features for Discriminative Localization", CVPR 2016): for a last conv, global
  average pooling and one linear layer, alpha_k = w[c, k] / (h*w), so Grad-CAM is CAM scaled by
  1/(h*w). Beside it, the saliency map of Simonyan et al. 2014: max over channels of |dy_c/dx|.
* ``filters``: the first convolution's filters as images, trained beside the values they started
  from (the run's seed builds those again), and how far training moved them.
* ``features``: the feature maps of each stage for one image, the most active channels of each.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import CnnlabError, InputSizeError
from ..models import create_model
from ..predict import load_image
from ..runconfig import RunConfig
from ..rundir import load_run, read_config
from ..text import name_some
from .inside_plots import CAM_ROWS, SHOWN_CHANNELS, SHOWN_FILTERS, plot_cam, plot_features, plot_filters
from .output import DEFAULT_OUT, write_outputs

SMALLEST_SIDE = 8  # an image file must have at least this many px a side, and a quarter of the input's


@dataclass(frozen=True)
class Call:
    """One module call of a forward pass: the module's name, its output's shape (None when it is no
    single tensor) and the (H, W) of its first 4-D input (None when it has none)."""

    name: str
    shape: tuple[int, ...] | None
    in_hw: tuple[int, int] | None

    @property
    def is_map(self) -> bool:
        """A feature map with positions: 4-D and larger than 1x1, and not a smaller map enlarged. An
        adaptive pool that repeats a 1x1 map to 7x7 (VGG's and AlexNet's on small inputs) adds no
        positions a CAM could tell apart."""
        if self.shape is None or len(self.shape) != 4 or self.shape[2] * self.shape[3] <= 1:
            return False
        return self.in_hw is None or self.shape[2] * self.shape[3] <= self.in_hw[0] * self.in_hw[1]


OnCall = Callable[[str, nn.Module, tuple[Any, ...], Any], Any]


def _hooked_forward(model: nn.Module, x: torch.Tensor, on_call: OnCall) -> None:
    """Run ``model`` on ``x`` without gradients, telling ``on_call`` of every module call (the root's
    excepted) as it finishes: a module finishes after the modules it calls, its parent after it."""
    names = {m: n for n, m in model.named_modules() if n}
    handles = [m.register_forward_hook(lambda m, a, o: on_call(names[m], m, a, o)) for m in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def trace_calls(model: nn.Module, x: torch.Tensor) -> list[Call]:
    """Every module call of one forward pass on ``x``, in the order the calls finished."""
    calls: list[Call] = []

    def record(name: str, _m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        first = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() == 4), None)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        calls.append(Call(name, shape, tuple(first.shape[2:]) if first is not None else None))

    _hooked_forward(model, x, record)
    return calls


def default_layer(calls: list[Call], model_name: str) -> str:
    """The last convolutional stage: of the calls that output a feature map, the one that finished
    last. Nested modules finish before their parent, so this is the outermost module at the last
    resolution (ResNet's layer3, GoogLeNet's inception5b, a Sequential ``features``)."""
    maps = [c for c in calls if c.is_map]
    if maps:
        return maps[-1].name
    if any(c.shape is not None and len(c.shape) == 4 for c in calls):
        raise CnnlabError(
            f"every feature map of {model_name} at this input size is 1x1: a CAM there has no positions; "
            "name an earlier layer with --layer"
        )
    raise CnnlabError(
        f"{model_name} has no convolutional feature maps ((N, C, H, W) outputs) to take a CAM of"
    )


def find_layer(model: nn.Module, calls: list[Call], name: str, model_name: str) -> nn.Module:
    """The module ``name`` of ``model``, checked to output a feature map; any mismatch in one line."""
    modules = {n: m for n, m in model.named_modules() if n}
    if name not in modules:
        close = difflib.get_close_matches(name, list(modules), n=3, cutoff=0.5)
        producers = list(dict.fromkeys(c.name for c in calls if c.is_map))  # a module called twice: once
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"its feature maps come from {name_some(producers)}"
        )
        raise CnnlabError(f"{model_name} has no layer {name!r}; {hint}")
    mine = [c for c in calls if c.name == name]
    if not mine:
        raise CnnlabError(f"layer {name!r} of {model_name} is not used by its forward pass")
    shape = mine[-1].shape  # a module called more than once is taken at its last call, as the hook is
    if shape is None or len(shape) != 4:
        what = "no single tensor" if shape is None else f"a tensor of shape {tuple(shape)}"
        when = f" at the last of its {len(mine)} calls" if len(mine) > 1 else ""
        raise CnnlabError(
            f"layer {name!r} of {model_name} outputs {what}{when}, not an (N, C, H, W) feature map"
        )
    if shape[2] * shape[3] <= 1:
        raise CnnlabError(
            f"layer {name!r} of {model_name} outputs a 1x1 map: no positions; name an earlier one"
        )
    return modules[name]


def _gradients(
    model: nn.Module, x: torch.Tensor, layer: nn.Module | None, class_index: int | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """One forward and backward pass of a batch of one: the logits (K,), the activation of ``layer``
    (C, h, w) and dy_c/d it (both None without a layer), and dy_c/dx (C, H, W). ``class_index`` None
    means the top class."""
    kept: list[torch.Tensor] = []

    def keep(_m: nn.Module, _a: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        kept[:] = [out]  # a module called twice is taken at its last call
        # The network goes on with a copy, so that an in-place op further on (a ReLU) leaves A as it was.
        return out.clone()

    handle = layer.register_forward_hook(keep) if layer is not None else None
    x = x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            logits = model(x)[0]
            if layer is not None and not kept:
                raise CnnlabError(
                    "the layer chosen is not used by the forward pass; name another with --layer"
                )
            c = int(logits.argmax()) if class_index is None else class_index
            grads = torch.autograd.grad(logits[c], [x, *kept], allow_unused=True)
    finally:
        if handle is not None:
            handle.remove()
    if layer is not None and grads[1] is None:
        raise CnnlabError("the layer chosen does not feed the class scores; name another with --layer")
    if layer is None:
        return logits.detach(), None, None, grads[0][0]
    return logits.detach(), kept[0].detach()[0], grads[1][0], grads[0][0]


def cam_from(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (h, w) from a layer's activation A and dy_c/dA, both (C, h, w)."""
    alpha = gradient.mean(dim=(1, 2))
    return F.relu((alpha[:, None, None] * activation).sum(0))


def grad_cam(
    model: nn.Module, x: torch.Tensor, layer: nn.Module, class_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw Grad-CAM (h, w) of class ``class_index`` at ``layer`` for a batch of one, and the logits."""
    logits, activation, gradient, _ = _gradients(model, x, layer, class_index)
    assert activation is not None and gradient is not None  # a layer was given
    return cam_from(activation, gradient), logits


def saliency(model: nn.Module, x: torch.Tensor, class_index: int) -> torch.Tensor:
    """The saliency map (H, W) of class ``class_index``: max over channels of |dy_c/dx|."""
    return _gradients(model, x, None, class_index)[3].abs().amax(0)


def _upsampled(cam: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, list[int] | None]:
    """``cam`` bilinearly resized to the image and scaled to 0..1 for drawing, and its peak (y, x) in
    image px; a CAM that is zero everywhere has no peak."""
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    top = up.max()
    if top <= 0:
        return torch.zeros_like(up), None
    i = int(up.argmax())
    return up / top, [i // size[1], i % size[1]]


def _class_index(name: str, classes: list[str], run_dir: str | os.PathLike[str]) -> int:
    if name in classes:
        return classes.index(name)
    close = difflib.get_close_matches(name, classes, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"its classes are {name_some(classes)}"
    raise CnnlabError(f"the model of {run_dir} has no class {name!r}; {hint}")


def load_checked(path: str, config: RunConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """An image file as the run's model takes it (`predict.load_image`): the uint8 image, the
    normalized batch of one, and notes on what was converted. An image too small to mean anything
    at the model's input (it would be blown up from a few pixels) is refused."""
    c, h, w = config.data.input_size
    if c not in (1, 3):
        raise InputSizeError(
            f"{config.model} takes {c}-channel input; image files give 1 (grayscale) or 3 (RGB) channels"
        )
    image, x = load_image(path, config.data)  # an unreadable file: DataError
    with Image.open(path) as im:
        width, height = im.size
        file_chans = 1 if Image.getmodebase(im.mode) == "L" else 3
    need_h, need_w = max(SMALLEST_SIDE, math.ceil(h / 4)), max(SMALLEST_SIDE, math.ceil(w / 4))
    if width < need_w or height < need_h:
        raise InputSizeError(
            f"{path} is {width}x{height} px, too small for {config.model}'s {h}x{w} input "
            f"(at least {need_w}x{need_h} px)"
        )
    notes = []
    if file_chans != c:
        kinds = {1: "grayscale", 3: "RGB"}
        notes.append(f"{kinds[file_chans]} image converted to {kinds[c]}")
    if (width, height) != (w, h):
        notes.append(f"resized from {width}x{height} px (shorter side, then centre crop)")
    return image, x, notes


def _cam_image(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: list[str], target: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One image's numbers and the maps cam.png draws of it."""
    size = (x.shape[2], x.shape[3])
    logits, activation, gradient, dx = _gradients(model, x, layer, None)
    assert activation is not None and gradient is not None
    probs = logits.softmax(0)
    top = int(probs.argmax())
    cam = cam_from(activation, gradient)
    drawn, peak = _upsampled(cam, size)
    sal = dx.abs().amax(0)
    row: dict[str, Any] = {
        "top_class": classes[top], "top_index": top, "top_prob": probs[top].item(),
        "cam_peak": peak, "cam_peak_map": list(divmod(int(cam.argmax()), cam.shape[1])) if peak else None,
    }  # fmt: skip
    # Scaled to the 99th percentile: a handful of steep pixels would otherwise leave the map black.
    maps: dict[str, Any] = {
        "cam": drawn,
        "saliency": (sal / sal.quantile(0.99).clamp_min(1e-12)).clamp(max=1),
    }
    if target is not None:
        class_cam, class_logits = grad_cam(model, x, layer, target)
        maps["class_cam"], row["class_cam_peak"] = _upsampled(class_cam, size)
        row["class_prob"] = class_logits.softmax(0)[target].item()
    return row, maps


def analyze_cam(
    run_dir: str | os.PathLike[str],
    images: list[str],
    layer: str | None = None,
    target: str | None = None,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
) -> dict[str, Any]:
    """Write cam.json and cam.png: Grad-CAM of the top class (and of class ``target``) and the
    saliency map of each image file for a run's model; return the numbers."""
    config = read_config(run_dir)
    if not images:
        raise CnnlabError("give at least one image file")
    classes = config.data.classes
    target_index = _class_index(target, classes, run_dir) if target is not None else None
    model = load_run(run_dir)
    loaded = [load_checked(path, config) for path in images]  # every image checked before the work
    calls = trace_calls(model, loaded[0][1])
    name = layer if layer is not None else default_layer(calls, config.model)
    module = find_layer(model, calls, name, config.model)
    rows, drawn = [], []
    for path, (image, x, notes) in zip(images, loaded, strict=True):
        row, maps = _cam_image(model, module, x, classes, target_index)
        rows.append({"image": str(path), **row, **({"notes": notes} if notes else {})})
        if len(drawn) < CAM_ROWS:
            drawn.append({"image": image, **maps})
    shape = next(c.shape for c in reversed(calls) if c.name == name)
    assert shape is not None  # find_layer checked it
    result: dict[str, Any] = {
        "run": str(run_dir), "model": config.model, "layer": name, "layer_default": layer is None,
        "layer_shape": list(shape[1:]), "input_size": config.data.input_size, "class": target,
        "images": rows,
    }  # fmt: skip
    if len(images) > CAM_ROWS:
        result["note"] = f"cam.png draws the first {CAM_ROWS} of {len(images)} images"
    result["files"] = write_outputs(out_dir, "cam", result, plot_cam(result, drawn))
    return result


def first_conv(model: nn.Module, x: torch.Tensor, model_name: str) -> tuple[str, nn.Conv2d]:
    """The first Conv2d the forward pass on ``x`` runs (not the first one declared: a model may define
    its head before its stem)."""
    found: list[tuple[str, nn.Conv2d]] = []

    def note(name: str, module: nn.Module, _a: tuple[Any, ...], _o: Any) -> None:
        if isinstance(module, nn.Conv2d) and not found:
            found.append((name, module))

    _hooked_forward(model, x, note)
    if not found:
        raise CnnlabError(f"{model_name} has no Conv2d layer: there are no filters to show")
    return found[0]


def initial_weights(config: RunConfig, name: str) -> tuple[torch.Tensor | None, str | None]:
    """The weight of module ``name`` as the run's training started, rebuilt as training built it
    (seed, then create_model), or None and why it cannot be."""
    if config.converted is not None:
        return None, f"converted from {config.converted.get('from', 'another library')}: trained elsewhere"
    if config.train.get("init"):
        return None, f"fine-tuned from {config.train['init']}: it started from that run's weights"
    seed = config.train.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return None, "config.json records no training seed"
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        fresh = create_model(
            config.model, num_classes=config.num_classes, in_chans=config.in_chans, **config.model_kwargs
        )
    return dict(fresh.named_modules())[name].weight.detach().float(), None


def analyze_filters(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] = DEFAULT_OUT
) -> dict[str, Any]:
    """Write filters.json and filters.png: a run's first-layer filters, trained beside initial, with
    their norms and how similar each stayed to its start; return the numbers."""
    config = read_config(run_dir)
    model = load_run(run_dir)
    name, conv = first_conv(model, torch.zeros(1, *config.data.input_size), config.model)
    trained = conv.weight.detach().float()
    initial, why_not = initial_weights(config, name)
    flat = trained.flatten(1)
    result: dict[str, Any] = {
        "run": str(run_dir), "model": config.model, "layer": name, "weight_shape": list(trained.shape),
        "kernel_size": list(conv.kernel_size), "shown": min(SHOWN_FILTERS, len(trained)),
        "initial_available": initial is not None,
        "norms": {"trained": [round(v, 6) for v in flat.norm(dim=1).tolist()], "initial": None},
        "mean_cosine": None,
    }  # fmt: skip
    if initial is not None:
        result["norms"]["initial"] = [round(v, 6) for v in initial.flatten(1).norm(dim=1).tolist()]
        result["mean_cosine"] = F.cosine_similarity(flat, initial.flatten(1), dim=1).mean().item()
    else:
        result["initial_note"] = f"no initial weights: {why_not}; only the trained filters are shown"
    result["files"] = write_outputs(out_dir, "filters", result, plot_filters(result, trained, initial))
    return result


def feature_stages(calls: list[Call]) -> list[int]:
    """Indices into ``calls`` of the stages: of the calls that output a feature map, the last before
    the resolution changes (the outermost module at each resolution), in forward order."""
    maps = [i for i, c in enumerate(calls) if c.is_map]
    hw = [calls[i].shape[2:] for i in maps]  # type: ignore[index]
    return [i for k, i in enumerate(maps) if k + 1 == len(maps) or hw[k + 1] != hw[k]]


def capture_calls(model: nn.Module, x: torch.Tensor, wanted: set[int]) -> dict[int, torch.Tensor]:
    """The outputs of the calls numbered ``wanted`` (as `trace_calls` numbers them) on ``x``, copied
    as they came out: an in-place op further on would otherwise change them."""
    count, kept = [0], {}

    def keep(_name: str, _m: nn.Module, _a: tuple[Any, ...], out: Any) -> None:
        if count[0] in wanted:
            kept[count[0]] = out.detach().clone()
        count[0] += 1

    _hooked_forward(model, x, keep)
    return kept


def analyze_features(
    run_dir: str | os.PathLike[str], image: str, out_dir: str | os.PathLike[str] = DEFAULT_OUT
) -> dict[str, Any]:
    """Write features.json and features.png: each stage's feature maps for one image file, its
    ``SHOWN_CHANNELS`` channels of highest mean activation drawn; return the numbers."""
    config = read_config(run_dir)
    model = load_run(run_dir)
    pixels, x, notes = load_checked(image, config)
    calls = trace_calls(model, x)
    stages = feature_stages(calls)
    if not stages:
        raise CnnlabError(f"{config.model} has no feature maps larger than 1x1 at its input size")
    outputs = capture_calls(model, x, set(stages))
    rows, shown = [], []
    for i in stages:
        fmap = outputs[i][0]
        top = fmap.mean(dim=(1, 2)).topk(min(SHOWN_CHANNELS, len(fmap))).indices
        rows.append({
            "name": calls[i].name, "shape": list(fmap.shape), "mean": fmap.mean().item(),
            "max": fmap.max().item(), "shown_channels": top.tolist(),
        })  # fmt: skip
        shown.append(fmap[top])
    result: dict[str, Any] = {
        "run": str(run_dir), "model": config.model, "image": str(image),
        "input_size": config.data.input_size, "stages": rows, **({"notes": notes} if notes else {}),
    }  # fmt: skip
    result["files"] = write_outputs(out_dir, "features", result, plot_features(result, pixels, shown))
    return result
