"""Inference-time fusion: fold each BatchNorm that directly follows a convolution into that convolution.

In eval mode a BatchNorm2d is a fixed affine map per channel, ``y = (x - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``. When its input is a convolution's output ``x = w * in + b``, the two
compose into one convolution with ``w' = w * s`` (per output channel) and ``b' = (b - mean) * s + beta``,
so the BN is replaced by ``nn.Identity`` and conv-BN-ReLU runs as conv(+bias)-ReLU: one pass over the
feature map less per pair. This is exact in real arithmetic; the new weights are computed in float64
and rounded once, so the outputs differ from the unfused model's only by float32 rounding (about 1e-6
relative, see tests/test_fuse.py).

How the pairs are found: ``torch.fx`` traces the model's forward (in eval mode) into a graph, and a
BN is folded when (1) its input node is an ``nn.Conv2d`` or ``DeformConv2d`` (whose output is also
linear in its weight, per output channel), (2) that conv's output has no other user, and (3) the conv
and the BN are each called exactly once, so changing them changes nothing else. Modules without any
BatchNorm inside are traced as opaque leaves: there is nothing to fold in them, and this keeps code fx
cannot trace (DeformConv2d's shape checks, a LinearClassifier's lazy input size) out of the trace.
A module whose own forward cannot be traced (data-dependent control flow) is searched child by child
instead, so its blocks are still fused; pairs that span two of its children are then left alone.

Left alone, unchanged: BN that precedes its conv (DenseNet's pre-activation BN-ReLU-conv) or follows
anything else (a concatenation, an addition, a pool); BN whose conv output is also used elsewhere; BN
without running statistics (it normalizes with batch statistics even in eval mode); modules the eval
forward never calls (GoogLeNet's auxiliary heads); subclasses of Conv2d or BatchNorm2d, whose forward
may do more than the base class (weight standardization, ...). The returned model keeps its class,
methods, attributes (``data_config``, ``min_input_size``) and hooks; its forward computes the same
function as the original's eval forward. Methods that read a conv's output before its BN (none in
cnnlab's analyses) would see the folded values.

Speed: on CPU folding alone gains little (a BN in eval mode is one cheap pass over the map); the
layout matters more, and the folded eager model in channels-last ran as fast as the heavier fused
forms tried (fx's and TorchScript's ``optimize_for_inference``), which lose the model's class,
attributes and input check. So the folded eager model in channels-last is what ``channels_last=True``
gives; the measurements are in benchmarks/README.md, "Measurement notes".
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn

from .layers import DeformConv2d

# Exact types, not isinstance: a subclass may change forward in a way that folding would break.
FOLDABLE_CONVS: tuple[type[nn.Module], ...] = (nn.Conv2d, DeformConv2d)


def _has_batchnorm(module: nn.Module) -> bool:
    return any(type(m) is nn.BatchNorm2d for m in module.modules())


class _Tracer(fx.Tracer):
    """fx's tracer with every BN-free module as a leaf: nothing to fold inside, and not traced."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or not _has_batchnorm(m)


def _graphs(module: nn.Module, prefix: str = "") -> list[tuple[str, fx.Graph]]:
    """The forward graph of ``module``, or, where its forward cannot be traced, those of its children
    (recursively), each with its module's qualified name prefix."""
    if not _has_batchnorm(module):
        return []
    try:
        return [(prefix, _Tracer().trace(module))]
    except Exception:  # fx raises TraceError, TypeError, RuntimeError, ... for untraceable code
        return [
            graph for name, child in module.named_children() for graph in _graphs(child, f"{prefix}{name}.")
        ]


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """The (conv, bn) qualified module names whose BN can be folded into the conv; ``model`` must be
    in eval mode (training-only branches would otherwise be traced)."""
    graphs = _graphs(model)
    calls: dict[str, int] = {}  # module name -> times called, over every traced graph
    for prefix, graph in graphs:
        for node in graph.nodes:
            if node.op == "call_module":
                calls[prefix + node.target] = calls.get(prefix + node.target, 0) + 1
    pairs = []
    for prefix, graph in graphs:
        for node in graph.nodes:
            if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
                continue
            source = node.args[0]
            if source.op != "call_module":
                continue
            conv_name, bn_name = prefix + source.target, prefix + node.target
            conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
            if (
                type(bn) is nn.BatchNorm2d
                and type(conv) in FOLDABLE_CONVS
                and bn.running_mean is not None  # else BN uses the batch's statistics, even in eval
                and len(source.users) == 1  # the conv output feeds only this BN
                and calls[conv_name] == calls[bn_name] == 1  # shared modules run elsewhere too
            ):
                pairs.append((conv_name, bn_name))
    return pairs


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` (eval mode) into ``conv``'s weight and bias, in place; the conv gets a bias if it had
    none. Computed in float64 on the CPU (MPS has no float64) and rounded once to the weight's dtype."""
    weight = conv.weight.detach().cpu().double()
    mean, var = bn.running_mean.cpu().double(), bn.running_var.cpu().double()
    gamma = bn.weight.detach().cpu().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().cpu().double() if bn.bias is not None else torch.zeros_like(mean)
    bias = conv.bias.detach().cpu().double() if conv.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    conv.weight.copy_(weight * scale.view(-1, *[1] * (weight.dim() - 1)))
    new_bias = ((bias - mean) * scale + beta).to(conv.weight)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)


def fuse_for_inference(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d that directly follows a conv folded into
    it and replaced by ``nn.Identity``; ``model`` itself is not changed. See the module docstring.

    ``channels_last`` also lays the weights out channels-last (NHWC), so the convolutions run in that
    layout whatever the input's (the first conv converts it): what ``cnnlab eval`` and ``predict`` use
    where ``channels_last_default`` says so. On CPU it is where the speed is (see the module docstring).
    """
    fused = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(fused):
        fold_bn_into_conv(fused.get_submodule(conv_name), fused.get_submodule(bn_name))
        parent, _, child = bn_name.rpartition(".")
        setattr(fused.get_submodule(parent), child, nn.Identity())
    return fused.to(memory_format=torch.channels_last) if channels_last else fused
