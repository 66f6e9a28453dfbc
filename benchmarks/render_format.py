"""How the rendered pages write numbers and tables: one home for the helpers `render.py`,
`render_analyses.py` and `render_papers.py` share."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells are already text or plain values."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def count(n: float) -> str:
    """Large integers (parameters, MACs) with thousands separators; the exact value, not a rounding."""
    return f"{int(n):,}"


def each_run(values: list[float]) -> str:
    """The figures of repeated runs, in one cell."""
    return ", ".join(map(num, values))
