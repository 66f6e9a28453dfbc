"""A checkpoint of torchvision or timm as a cnnlab run directory.

cnnlab's ResNet, AlexNet, VGG, GoogLeNet, DenseNet and EfficientNet use torchvision's parameter names
and shapes, and its SE-ResNet timm's, so most checkpoints load as they are; timm's ResNets have
torchvision's names too. What is renamed or adapted:

* DDP checkpoints: a leading ``module.`` is dropped;
* torchvision's legacy DenseNet names (``denselayer1.norm.1.weight``, from the Lua-era release) become
  today's (``denselayer1.norm1.weight``), the renaming torchvision applies to its own pretrained files;
* timm's EfficientNets name their parts (``blocks.1.0.conv_pwl``) where torchvision numbers them
  (``features.2.0.block.3.0``); the parts map one to one, and timm's BatchNorm eps (1e-5 in B5-B7,
  where torchvision has 1e-3) is kept as a model argument of the run;
* a GoogLeNet checkpoint without the auxiliary heads (torchvision drops them from a pretrained model)
  gives a model built without them.

The file is read without running code (``torch.load(weights_only=True)`` or safetensors); the number
of classes and of input channels are read off the head's and the stem's shapes; then every key and
every shape must match the model cnnlab builds, or nothing is written. BatchNorm's
``num_batches_tracked`` counters, which old checkpoints lack, are the only keys that may be missing
(they are set to 0, as ``load_state_dict`` does for such files). A 1000-class model gets ImageNet's
class names and its library's evaluation preprocessing (imagenet.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import imagenet, rundir
from .errors import CnnlabError
from .models import create_model, dependent_tensors, min_input_size, model_family, size_in
from .runconfig import DataInfo, RunConfig
from .text import first_line, name_some

SOURCES = ("torchvision", "timm")
SHOWN = 5  # offending keys named in an error; the rest are counted

# timm's names of the models cnnlab has under another name (the weights' keys are the same).
TIMM_ALIASES = {f"seresnet{d}": f"se_resnet{d}" for d in (18, 34, 50, 101, 152)}

# torchvision's DenseNet checkpoints of 2017 say "norm.1", "relu.1", "conv.1" where the modules are
# now "norm1", "relu1", "conv1".
_LEGACY_DENSENET = re.compile(
    r"^(.*\.denselayer\d+\.(?:norm|relu|conv))\.([12])\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_NESTED = ("state_dict", "model", "model_state_dict")

# timm's EfficientNet: blocks.STAGE.BLOCK.PART... is torchvision's features.STAGE+1.BLOCK.block.INDEX...
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.([a-z_]+\d?)\.(.+)$")
_TIMM_MBCONV = {
    "conv_pw": "0.0",
    "bn1": "0.1",
    "conv_dw": "1.0",
    "bn2": "1.1",
    "se": "2",
    "conv_pwl": "3.0",
    "bn3": "3.1",
}
# The blocks without expansion (depthwise-separable: timm's conv_pw is then the projection).
_TIMM_SEPARABLE = {"conv_dw": "0.0", "bn1": "0.1", "se": "1", "conv_pw": "2.0", "bn2": "2.1"}
_TIMM_SE = {"conv_reduce": "fc1", "conv_expand": "fc2"}


def read_state_dict(file: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt`` (plain tensors only: a pickle asking for code is refused) or
    ``.safetensors`` file, unwrapped from ``{"state_dict": ...}`` or ``{"model": ...}``."""
    path = Path(file)
    if not path.is_file():
        raise CnnlabError(f"no checkpoint file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise CnnlabError(f"cannot read {path} as safetensors: {first_line(e)}") from None
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        obj = rundir.load_tensors(Path(path), "weights")
    else:
        raise CnnlabError(f"{path}: expected a .pth, .pt or .safetensors file, got {suffix or 'no suffix'!r}")

    for key in _NESTED:  # training scripts wrap the weights with the optimizer, epoch, ...
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CnnlabError(f"{path} holds no state_dict (a dict of parameter names to tensors)")
    others = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if others:
        raise CnnlabError(f"{path} is not a state_dict: {name_some(others, SHOWN)} are not tensors")
    return dict(obj)


def map_keys(source: str, state: dict[str, torch.Tensor], model: str = "") -> dict[str, torch.Tensor]:
    """``state`` under cnnlab's names: ``module.`` dropped, legacy DenseNet names updated, timm's
    EfficientNet parts numbered as torchvision's (``model`` says which renaming applies)."""
    if source not in SOURCES:
        raise CnnlabError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    state = _renamed(state, lambda key: key.removeprefix("module."))
    if source == "torchvision":
        return _renamed(state, lambda key: _LEGACY_DENSENET.sub(r"\1\2.\3", key))
    if model.startswith("efficientnet_"):
        return _timm_efficientnet(state)
    return state


def _renamed(state: dict[str, torch.Tensor], rename: Callable[[str], str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = rename(key)
        if new in out:
            raise CnnlabError(f"the checkpoint has {new!r} twice (as {key!r} and under another name)")
        out[new] = value
    return out


def _timm_efficientnet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's EfficientNet names as torchvision's; a name that fits no rule stays, for check_fit."""
    blocks = [m.groups() for key in state if (m := _TIMM_BLOCK.match(key))]
    # features.0 is the stem, features.1..N the N stages, features.N+1 the head conv.
    head = max((int(stage) for stage, *_ in blocks), default=-1) + 2
    expanded = {(stage, block) for stage, block, part, _ in blocks if part == "conv_pwl"}
    top = {
        "conv_stem.": "features.0.0.",
        "bn1.": "features.0.1.",
        "conv_head.": f"features.{head}.0.",
        "bn2.": f"features.{head}.1.",
        "classifier.": "classifier.1.",
    }

    def rename(key: str) -> str:
        if m := _TIMM_BLOCK.match(key):
            stage, block, part, rest = m.groups()
            parts = _TIMM_MBCONV if (stage, block) in expanded else _TIMM_SEPARABLE
            if part not in parts:
                return key
            if part == "se":
                layer, _, leaf = rest.partition(".")
                rest = f"{_TIMM_SE.get(layer, layer)}.{leaf}"
            return f"features.{int(stage) + 1}.{block}.block.{parts[part]}.{rest}"
        prefix = next((p for p in top if key.startswith(p)), None)
        return top[prefix] + key.removeprefix(prefix) if prefix else key

    return _renamed(state, rename)


def _model_kwargs(source: str, name: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the checkpoint's model was built with, where cnnlab's default differs."""
    if source == "timm" and name.startswith("efficientnet_"):
        return {"bn_eps": 1e-5, "bn_momentum": 0.1}  # timm keeps PyTorch's BN defaults in B5-B7 too
    if name == "googlenet" and not any(k.startswith(("aux1.", "aux2.")) for k in state):
        return {"aux_logits": False}
    return {}


def check_fit(name: str, model_state: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """Every key present, none surplus, every shape equal, or a one-line CnnlabError."""
    missing = [k for k in model_state if k not in state and not k.endswith("num_batches_tracked")]
    surplus = [k for k in state if k not in model_state]
    shapes = [
        f"{k} {list(state[k].shape)} (cnnlab: {list(v.shape)})"
        for k, v in model_state.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {name_some(missing, SHOWN)}")
    if surplus:
        problems.append(f"{len(surplus)} surplus: {name_some(surplus, SHOWN)}")
    if shapes:
        problems.append(f"{len(shapes)} of another shape: {name_some(shapes, SHOWN)}")
    if problems:
        raise CnnlabError(
            f"the checkpoint does not fit cnnlab's {name}: {'; '.join(problems)}; nothing was written"
        )


def cnnlab_name(source: str, model: str) -> str:
    """cnnlab's name of ``source``'s ``model``; an unknown source or model is a one-line error."""
    if source not in SOURCES:
        raise CnnlabError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    name = TIMM_ALIASES.get(model, model) if source == "timm" else model
    model_family(name)  # an unknown name: UnknownNameError, with the closest names
    return name


def converted_model(
    source: str, model: str, state: dict[str, torch.Tensor]
) -> tuple[nn.Module, dict[str, Any]]:
    """cnnlab's ``model`` (a torchvision or timm name) holding the checkpoint's tensors ``state``, in
    eval mode, and how it was built: {"model", "model_kwargs", "num_classes", "in_chans"}."""
    name = cnnlab_name(source, model)
    state = map_keys(source, state, name)
    kwargs = _model_kwargs(source, name, state)
    # Read off the head's and the stem's shapes; none found (head or stem missing): check_fit says so.
    num_classes = size_in(state, dependent_tensors(name, "num_classes", **kwargs)) or 1000
    in_chans = size_in(state, dependent_tensors(name, "in_chans", **kwargs)) or 3
    with torch.device("meta"):
        net = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    model_state = net.state_dict()
    check_fit(name, model_state, state)
    # Copies: a file's tensors may sit unaligned in its memory map, where the kernels take other
    # paths and round otherwise than for the model load_run builds.
    state = {
        k: state[k].to(v.dtype, copy=True) if k in state else torch.zeros((), dtype=v.dtype)
        for k, v in model_state.items()
    }
    net.load_state_dict(state, assign=True)
    if any(t.is_meta for t in [*net.parameters(), *net.buffers()]):  # a buffer outside the state_dict
        net = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
        net.load_state_dict(state)
    built = {"model": name, "model_kwargs": kwargs, "num_classes": num_classes, "in_chans": in_chans}
    return net.eval(), built


def convert_checkpoint(
    source: str,
    model: str,
    file: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> dict[str, Any]:
    """Convert a torchvision or timm checkpoint of ``model`` into the run directory ``out``, checked:
    ``load_run(out)`` gives the same tensors and the same logits as the checkpoint loaded directly."""
    cnnlab_name(source, model)  # a mistyped source or model: before anything is read or written
    run_dir = Path(out)
    rundir.check_new_run_dir(run_dir)
    net, built = converted_model(source, model, read_state_dict(file))
    num_classes, in_chans = built["num_classes"], built["in_chans"]
    params = sum(p.numel() for p in net.parameters())

    data = _data_info(source, model, net, num_classes, in_chans)
    config = RunConfig(
        **built,
        params=params,
        data=data,
        train={"data_root": None},
        converted={"from": source, "model": model, "file": str(Path(file).resolve())},
        torch=torch.__version__,
    )
    rundir.make_run_dir(run_dir)
    rundir.save_weights(net, run_dir / rundir.WEIGHTS)
    rundir.write_config(run_dir, config)

    max_diff = _round_trip(net, run_dir)
    return {
        "run_dir": str(run_dir),
        "model": built["model"],
        "model_kwargs": built["model_kwargs"],
        "source": source,
        "file": str(file),
        "num_classes": num_classes,
        "in_chans": in_chans,
        "params": params,
        "tensors": len(net.state_dict()),
        "input_size": data.input_size,
        "resize_size": data.resize_size,
        "class_names": data.name,
        "max_abs_diff": max_diff,
        "files": {"config": str(run_dir / rundir.CONFIG), "weights": str(run_dir / rundir.WEIGHTS)},
    }


def _data_info(source: str, model: str, net: nn.Module, num_classes: int, in_chans: int) -> DataInfo:
    """ImageNet's class names and the library's preprocessing for an ImageNet model; else placeholders."""
    if num_classes == imagenet.NUM_CLASSES and in_chans == 3:
        prep = imagenet.preprocessing(source, model)
        return DataInfo(
            name="imagenet",
            source="imagenet",
            classes=list(imagenet.class_names()),
            mean=list(prep.mean),
            std=list(prep.std),
            input_size=[3, prep.crop, prep.crop],
            resize_size=prep.resize,
            interpolation=prep.interpolation,
        )
    # Unknown classes and statistics: placeholders keep predict's output readable.
    side = getattr(net, "default_input_size", (in_chans, 224, 224))[-1]
    return DataInfo(
        name="converted",
        source="converted",
        classes=[f"class {i}" for i in range(num_classes)],
        mean=list(imagenet.MEAN) if in_chans == 3 else [0.5] * in_chans,
        std=list(imagenet.STD) if in_chans == 3 else [0.5] * in_chans,
        input_size=[in_chans, side, side],
    )


@torch.no_grad()
def _round_trip(net: nn.Module, run_dir: Path) -> float:
    """``load_run`` must give back the very tensors, and the same logits on a small input."""
    loaded = rundir.load_run(run_dir)
    ours, theirs = net.state_dict(), loaded.state_dict()
    differ = [k for k, v in ours.items() if k not in theirs or not torch.equal(v, theirs[k])]
    if differ:
        raise CnnlabError(f"{run_dir} does not load back the converted weights: {name_some(differ, SHOWN)}")
    c = loaded.data_config.input_size[0]  # type: ignore[attr-defined]
    side = max(min_input_size(net), 64)
    x = torch.randn(1, c, side, side, generator=torch.Generator().manual_seed(0))
    a, b = net(x), loaded(x)
    diff = (a - b).abs().max().item()
    if not torch.allclose(a, b, rtol=1e-5, atol=1e-5):
        raise CnnlabError(f"{run_dir}: the loaded model's logits differ from the checkpoint's by {diff:.2e}")
    return diff
