"""Small kernels stacked (Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", 2015, Sec. 2.3): two 3x3 convs see the 5x5 window of one 5x5 conv, three see the
7x7 window of a 7x7, with a ReLU between them, and for C maps in and out the stack has 18C^2 or 27C^2
weights against 25C^2 or 49C^2.

The same LeNet-style network (``simple_cnn``) is trained four ways: both convs 5x5, each
as two 3x3, both 7x7, each as three 3x3 (``kernel`` and ``stack``); the receptive field, the
parameters and the MACs come from ``summarize``, the speed from ``inference_speed`` (the median of
three measurements, taken in turns so that a change in the machine's load spreads over every arm).

What differs from the paper: VGG's count holds where a layer keeps its width, and LeNet's convs widen
(1 to 6, 6 to 16 maps), where a stack whose first conv sets the width has more weights than the large
kernel. So the arms use 16 maps in both convs: conv2 keeps its width and is the layer the weight count
is judged on; conv1 still reads one channel, where the stack costs more (9C + 9C^2 against 25C
weights), which the parameter column shows. Every arm trains with AdamW (linear's recipe: lr 3e-3,
weight decay 0.01) instead of simple_cnn's SGD: with SGD and PyTorch's default initialization, whose
variance shrinks layer by layer, the six convs of the 3x3x3 network stayed near chance for 12 epochs
(79% after 20), the stalling of deep plain nets that VGG avoided by initializing its deeper nets from
shallower ones or with Glorot's scheme (Sec. 3.1); AdamW's steps do not depend on the weights' scale
(3x3x3 reached 98% in 15 epochs). A budget of minutes on the mnist5k digits, not ImageNet.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from ..analysis.compare import inference_speed
from ..analysis.summary import summarize
from ..models import create_model
from ..plots import pyplot
from ..rundir import read_config
from .arms import Setup, conclude, train_arm
from .claims import Spread, all_of, finding, lower, no_worse, show, within

CLAIM = (
    "A stack of 3x3 convs sees the receptive field of one large kernel with fewer weights, and is at "
    "least as accurate."
)
HELP = "two 3x3 against one 5x5, three 3x3 against one 7x7: weights, MACs, accuracy, speed"
# Per epoch of mnist5k on a loaded 2-core machine: about 2 s for 5x5 and 7x7, 3.5 s for 2x3x3 and
# 5.5 s for 3x3x3 (the stacks' extra convs at full resolution): 13 s for the four arms, perhaps 7 s
# alone, so three seeds of 15 epochs take about 15 x 3 x 7 s = 5-6 minutes alone, 10 loaded.
EPOCHS = 15
OPTIMIZER = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01}  # a --lr given wins
WIDTHS = (16, 16)  # the same width in and out of conv2, as VGG's count assumes
ARMS = {"5x5": (5, False), "2x3x3": (5, True), "7x7": (7, False), "3x3x3": (7, True)}
PAIRS = (("2x3x3", "5x5"), ("3x3x3", "7x7"))  # (stack, the large kernel it replaces)
SPEED_ROUNDS = 3


def costs(kernel: int, stack: bool, input_size: tuple[int, int, int], num_classes: int) -> dict[str, int]:
    """Parameters, conv2's weights, MACs and receptive field of one arm's network."""
    s = summarize("simple_cnn", input_size, num_classes=num_classes, **_kwargs(kernel, stack))
    conv2 = sum(row["params"] for row in s["layers"] if row["name"].split(".")[0] == "conv2")
    return {"params": s["params"], "conv2": conv2, "macs": s["macs"], "rf": s["receptive_field"]}


def speeds(input_size: tuple[int, int, int], num_classes: int, min_seconds: float) -> dict[str, float]:
    """Images per second of each arm's network, the median of SPEED_ROUNDS rounds over all arms."""
    models = {
        name: create_model("simple_cnn", num_classes, input_size[0], **_kwargs(*arm)).eval()
        for name, arm in ARMS.items()
    }
    rounds = [
        {name: inference_speed(m, input_size, min_seconds=min_seconds) for name, m in models.items()}
        for _ in range(SPEED_ROUNDS)
    ]
    return {name: statistics.median(r[name] for r in rounds) for name in ARMS}


def judge(cost: dict[str, dict[str, int]], acc: dict[str, Spread]) -> list[dict[str, str]]:
    """``cost[arm]`` as ``costs`` returns it, ``acc[arm]`` the test accuracy, for the arms of PAIRS."""

    def pairs(text: Callable[[str], str]) -> str:
        return "; ".join(f"{s}: {text(s)} against {text(k)} ({k})" for s, k in PAIRS)

    def weights(key: str) -> str:
        return pairs(lambda arm: f"{cost[arm][key]:,}")

    return [
        finding(
            "the stack has fewer weights than the large kernel in the conv that keeps its width (conv2)",
            all_of([lower(cost[s]["conv2"], cost[k]["conv2"]) for s, k in PAIRS]),
            f"{weights('conv2')}; whole network: {weights('params')}",
        ),
        finding(
            "the stack has the receptive field of the large kernel",
            all_of([within(cost[s]["rf"], cost[k]["rf"], cost[k]["rf"]) for s, k in PAIRS]),
            pairs(lambda a: f"{cost[a]['rf']} px"),
        ),
        finding(
            "the stack is at least as accurate as the large kernel",
            all_of([no_worse(acc[s], acc[k]) for s, k in PAIRS]),
            pairs(lambda a: show(acc[a], 100, unit="%")),
        ),
    ]


def run(setup: Setup) -> dict[str, Any]:
    """Train the four arms over the seeds into ``OUT/runs/ARM``, count and time each network; write
    kernels.json and kernels.png."""
    epochs = setup.budget(EPOCHS)
    arms = {
        name: train_arm(
            setup,
            name,
            "simple_cnn",
            epochs,
            model_kwargs=_kwargs(kernel, stack),
            **(OPTIMIZER | setup.options),
        )
        for name, (kernel, stack) in ARMS.items()
    }
    config = read_config(arms["5x5"]["run_dirs"][0])
    input_size, num_classes = tuple(config.data.input_size), config.num_classes
    cost = {name: costs(kernel, stack, input_size, num_classes) for name, (kernel, stack) in ARMS.items()}
    setup.say("timing inference")
    speed = speeds(input_size, num_classes, min_seconds=0.05 if setup.quick else 1.0)
    acc = {name: arm["test_acc"] for name, arm in arms.items()}
    rows = [
        {
            "arm": name,
            **cost[name],
            "test_acc": acc[name],
            "speed": speed[name],
            "seconds": arm["train_time_s"],
        }
        for name, arm in arms.items()
    ]
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("conv2", "conv2 weights", "int"),
        ("macs", "MACs", "int"), ("rf", "receptive field (px)", "int"), ("test_acc", "test accuracy", "pct"),
        ("speed", "images/s", "int"), ("seconds", "training time", "s"),
    ]  # fmt: skip
    result = {"epochs": epochs, "widths": list(WIDTHS), "costs": cost, "speed": speed, "runs": arms}
    return conclude("kernels", CLAIM, setup, judge(cost, acc), columns, rows, plot(result), **result)


def _kwargs(kernel: int, stack: bool) -> dict[str, Any]:
    return {"widths": list(WIDTHS), "kernel": kernel, "stack": stack}


def plot(r: dict[str, Any]) -> Any:
    """Test accuracy per epoch (mean over seeds) per arm; conv2's weights, MACs and images/s per arm."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), layout="constrained")
    names = list(ARMS)
    colors = dict(zip(names, plt.cm.tab10.colors, strict=False))
    for name, arm in r["runs"].items():
        per_seed = arm["curves"]["test_acc"]
        mean = [100 * sum(v) / len(v) for v in zip(*per_seed, strict=True)]
        style = "--" if ARMS[name][1] else "-"
        axes[0].plot(range(1, len(mean) + 1), mean, style, marker="o", ms=3, color=colors[name], label=name)
    seeds = len(next(iter(r["runs"].values()))["run_dirs"])
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title=f"mean of {seeds} seeds (dashed: stacks)")
    axes[0].grid(True, alpha=0.3)
    axes[0].legend()
    bars = (
        ("conv2 weights", [r["costs"][n]["conv2"] for n in names]),
        ("MACs per image", [r["costs"][n]["macs"] for n in names]),
        ("images/s (inference)", [r["speed"][n] for n in names]),
    )
    for ax, (title, values) in zip(axes[1:], bars, strict=True):
        ax.bar(names, values, color=[colors[n] for n in names])
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    return fig
