"""A linear classifier's weights as class templates (the course's k-NN and linear baselines; CS231n's
linear classification notes): each row of the weight matrix, seen as an image, looks like the mean
image of its class. Measured as the correlation of each template with its own class mean against its
correlation with the other classes' means (``analysis.templates``), over seeds.
"""

from __future__ import annotations

from typing import Any

from ..analysis.templates import plot_templates, template_study
from .arms import Setup, conclude, train_arm
from .claims import Spread, finding, higher, show, spread

CLAIM = (
    "The weights of a trained linear classifier are class templates: each correlates more with its own "
    "class's mean image than with the other classes' means."
)
HELP = "a linear classifier's weights against the class means: are they templates?"
EPOCHS = 12  # linear's recipe; about 30 s for three seeds on mnist5k on 2 cores


def judge(own: Spread, other: Spread) -> list[dict[str, str]]:
    return [
        finding(
            "the mean correlation of a template with its own class mean is higher than with the other means",
            higher(own, other),
            f"{show(own, digits=3)} against {show(other, digits=3)}",
        )
    ]


def run(setup: Setup) -> dict[str, Any]:
    epochs = setup.budget(EPOCHS)
    arm = train_arm(setup, "linear", "linear", epochs)
    studies = [template_study(run_dir) for run_dir in arm["run_dirs"]]
    own = spread(s[0]["mean_correlation_own"] for s in studies)
    other = spread(s[0]["mean_correlation_other"] for s in studies)
    best = spread(s[0]["own_mean_is_best_match"] for s in studies)
    rows = [
        {"arm": "linear", "params": arm["params"], "test_acc": arm["test_acc"], "own": own, "other": other,
         "best": best}
    ]  # fmt: skip
    columns = [
        ("arm", "arm", "int"), ("params", "parameters", "int"), ("test_acc", "test accuracy", "pct"),
        ("own", "r with own class mean", "num"), ("other", "r with other means", "num"),
        ("best", "own mean is the best match", "pct"),
    ]  # fmt: skip
    result, templates, means = studies[0]
    fig = plot_templates(result, templates, means)
    fig.suptitle(
        f"linear classifier on {result['dataset']}, seed {setup.seeds[0]}: templates above the class means; "
        f"over {len(setup.seeds)} seeds, r with own mean {show(own, digits=3)}, "
        f"with the others {show(other, digits=3)}",
        fontsize=8,
    )
    numbers = {"epochs": epochs, "per_seed": [s[0] for s in studies], "linear": arm}
    return conclude("templates", CLAIM, setup, judge(own, other), columns, rows, fig, **numbers)
