"""What the 1x1 reductions of GoogLeNet's Inception modules save (Szegedy et al. 2015, Section 4).

Each of the nine modules (3a-5b) is measured twice at the input it gets inside GoogLeNet at 224x224:
as built (1x1 reductions before the 3x3 and "5x5" convs, and a 1x1 projection after the pool), and
without them (the 3x3 and "5x5" convs straight on the module's input, the pool branch passing the
input's channels through unprojected). The "5x5" branch is counted with the kernel it is built with:
a 3x3 in torchvision's GoogLeNet, which we follow (see models/googlenet.py); ``five_kernel=5`` counts
the paper's 5x5 instead. MACs are the conv MACs (``costs.count_macs``); parameters include BN's.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..models import create_model
from ..models.googlenet import INCEPTION_TABLE, Inception, conv_bn
from ..plots import pyplot
from .costs import count_macs
from .output import DEFAULT_OUT, write_outputs

FIVE_KERNEL_AS_BUILT = 3  # torchvision's "5x5" branch is a 3x3 conv


class InceptionNoReduction(nn.Module):
    """An Inception module without its 1x1 reductions and pool projection."""

    def __init__(
        self,
        in_ch: int,
        ch1x1: int,
        ch3x3: int,
        ch5x5: int,
        five_kernel: int = FIVE_KERNEL_AS_BUILT,
    ) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_ch, ch1x1, 1)
        self.branch2 = conv_bn(in_ch, ch3x3, 3)
        self.branch3 = conv_bn(in_ch, ch5x5, five_kernel)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def module_inputs(image_size: int = 224) -> dict[str, tuple[int, int, int]]:
    """The (C, H, W) each Inception module receives inside GoogLeNet at ``image_size``."""
    with torch.device("meta"):
        net = create_model("googlenet")
    shapes: dict[str, tuple[int, int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(
            lambda _m, args, name=name: shapes.__setitem__(name, tuple(args[0].shape[1:]))
        )
        for name, m in net.inceptions.items()
    ]
    try:
        with torch.no_grad():
            net.eval()(torch.empty(1, 3, image_size, image_size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return shapes  # type: ignore[return-value]


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def inception_costs(image_size: int = 224, five_kernel: int = FIVE_KERNEL_AS_BUILT) -> dict[str, Any]:
    """MACs and parameters of each Inception module with and without its 1x1 reductions."""
    rows = []
    for name, shape in module_inputs(image_size).items():
        c1, r3, c3, r5, c5, proj = INCEPTION_TABLE[name]
        with torch.device("meta"):
            built = Inception(shape[0], c1, r3, c3, r5, c5, proj)
            if five_kernel != FIVE_KERNEL_AS_BUILT:
                built.branch3[1] = conv_bn(r5, c5, five_kernel)
            bare = InceptionNoReduction(shape[0], c1, c3, c5, five_kernel)
        with_red, without = count_macs(built, shape), count_macs(bare, shape)
        rows.append(
            {
                "module": name,
                "input": list(shape),
                "out_channels": c1 + c3 + c5 + proj,
                "out_channels_without": c1 + c3 + c5 + shape[0],
                "macs": with_red,
                "params": _params(built),
                "macs_without": without,
                "params_without": _params(bare),
                "macs_ratio": without / with_red,
                "params_ratio": _params(bare) / _params(built),
            }
        )
    total = sum(r["macs"] for r in rows), sum(r["macs_without"] for r in rows)
    return {
        "image_size": image_size,
        "five_kernel": five_kernel,
        "modules": rows,
        "macs": total[0],
        "macs_without": total[1],
        "macs_ratio": total[1] / total[0],
    }


def plot_inception(result: dict[str, Any]) -> Any:
    """Grouped bars of MACs per module, with and without the reductions."""
    plt = pyplot()

    rows = result["modules"]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    ax.bar([x - 0.2 for x in xs], [r["macs"] / 1e6 for r in rows], 0.4, label="with 1x1 reductions")
    ax.bar([x + 0.2 for x in xs], [r["macs_without"] / 1e6 for r in rows], 0.4, label="without")
    for x, r in zip(xs, rows, strict=True):
        ax.annotate(
            f"x{r['macs_ratio']:.2f}",
            (x + 0.2, r["macs_without"] / 1e6),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(list(xs), [r["module"] for r in rows])
    ax.set_xlabel("Inception module")
    ax.set_ylabel("MMACs")
    ax.set_title(
        f"GoogLeNet at {result['image_size']}x{result['image_size']}: MACs per module "
        f'("5x5" branch counted as {result["five_kernel"]}x{result["five_kernel"]})'
    )
    ax.legend()
    return fig


def analyze_inception(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT, image_size: int = 224, five_kernel: int = 3
) -> dict[str, Any]:
    """GoogLeNet's Inception modules with and without their 1x1 reductions; the "5x5" branch counted
    with ``five_kernel`` (3 as built, 5 as in the paper). Writes inception.json and inception.png."""
    result = inception_costs(image_size, five_kernel)
    result["files"] = write_outputs(out_dir, "inception", result, plot_inception(result))
    return result
