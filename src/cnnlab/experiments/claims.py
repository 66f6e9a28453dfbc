"""How an experiment turns its measurements into a verdict on the course's claim.

A quantity measured once per seed is kept as a ``Spread``: its values, mean, standard deviation,
lowest and highest. Two arms are told apart only when their seed ranges do not overlap: a difference
inside the seed-to-seed spread is "cannot tell", whatever its sign. A quantity that does not depend on
the seed (parameters, MACs) is a spread of one value, so any difference tells.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

SUPPORTS, CONTRADICTS, CANNOT_TELL = "supports", "contradicts", "cannot tell"
VERDICTS = (SUPPORTS, CONTRADICTS, CANNOT_TELL)

Spread = dict[str, Any]


def spread(values: Iterable[float]) -> Spread:
    """The values of one quantity over seeds, with their mean, sample standard deviation and range."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("a spread needs at least one value")
    return {
        "values": v,
        "mean": statistics.fmean(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0,
        "min": min(v),
        "max": max(v),
    }


def as_spread(x: float | Spread) -> Spread:
    return x if isinstance(x, dict) else spread([x])


def higher(a: float | Spread, b: float | Spread) -> str:
    """Whether ``a`` is higher than ``b``: SUPPORTS when every seed of ``a`` is above every seed of
    ``b``, CONTRADICTS when every seed is below, CANNOT_TELL when their ranges touch or overlap."""
    a, b = as_spread(a), as_spread(b)
    if a["min"] > b["max"]:
        return SUPPORTS
    if a["max"] < b["min"]:
        return CONTRADICTS
    return CANNOT_TELL


def lower(a: float | Spread, b: float | Spread) -> str:
    """Whether ``a`` is lower than ``b``, by the same rule as ``higher``."""
    return higher(b, a)


def no_worse(a: float | Spread, b: float | Spread) -> str:
    """Whether ``a`` is at least as high as ``b``: CONTRADICTS only when ``a`` is lower beyond the
    spread; otherwise SUPPORTS (a tie within the spread is what "no worse" claims)."""
    return CONTRADICTS if higher(a, b) == CONTRADICTS else SUPPORTS


def within(value: float | Spread, low: float, high: float) -> str:
    """Whether a quantity lies in [low, high]: every seed inside, every seed outside, or some of each."""
    s = as_spread(value)
    if low <= s["min"] and s["max"] <= high:
        return SUPPORTS
    if s["max"] < low or s["min"] > high:
        return CONTRADICTS
    return CANNOT_TELL


def all_of(verdicts: Sequence[str]) -> str:
    """A claim made of parts: contradicted if any part is, supported if every part is, else cannot tell."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    if CONTRADICTS in verdicts:
        return CONTRADICTS
    return SUPPORTS if all(v == SUPPORTS for v in verdicts) else CANNOT_TELL


def sentence(verdict: str) -> str:
    """The verdict as the CLI, the report and the results page say it."""
    if verdict == CANNOT_TELL:
        return "cannot tell: the arms differ by less than the seed-to-seed spread"
    return f"the measurement {verdict} the claim"


def finding(claim: str, verdict: str, evidence: str) -> dict[str, str]:
    """One part of a claim as the JSON holds it: what is claimed, the verdict and the numbers behind it."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    return {"claim": claim, "verdict": verdict, "evidence": evidence}


def show(x: float | Spread, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``mean ± std (min-max)`` of a spread, or the value alone; ``scale`` 100 shows fractions as %."""
    s = as_spread(x)
    mean = f"{scale * s['mean']:.{digits}f}{unit}"
    if len(s["values"]) == 1:
        return mean
    return (
        f"{mean} ± {scale * s['std']:.{digits}f} "
        f"({scale * s['min']:.{digits}f} to {scale * s['max']:.{digits}f}{unit}, {len(s['values'])} seeds)"
    )


# How a column of an experiment's table shows its values: (scale, digits, unit).
KINDS = {
    "pct": (100.0, 2, "%"),
    "int": (1.0, 0, ""),
    "num": (1.0, 3, ""),
    "sci": (1.0, -1, ""),
    "s": (1.0, 1, " s"),
    "x": (1.0, 2, "x"),
    "mb": (1e-6, 1, " MB"),
}


def cell(value: Any, kind: str) -> str:
    """One cell of an experiment's table: a spread as ``mean ± std``, a number in its kind's units."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    scale, digits, unit = KINDS[kind]
    s = as_spread(value)
    if digits < 0:  # magnitudes spanning decades
        text = f"{s['mean']:.2e}"
        return text if len(s["values"]) == 1 else f"{text} ± {s['std']:.1e}"
    if kind == "int" and len(s["values"]) == 1:
        return f"{s['mean']:,.0f}"
    text = f"{scale * s['mean']:,.{digits}f}"
    if len(s["values"]) > 1:
        text += f" ± {scale * s['std']:.{digits}f}"
    return text + unit
