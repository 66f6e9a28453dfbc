"""How cnnlab words things for people: one-line reasons, short lists, large numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SHOWN = 4  # items named in a message; the rest are counted
# What str.splitlines breaks at: a value typed with a line break in it must not split an error in two.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none: errors stay one line."""
    text = str(error).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(error).__name__


def name_some(items: Sequence[str], shown: int = SHOWN) -> str:
    """``a, b, c, d and 3 more``."""
    listed = ", ".join(items[:shown])
    return listed + (f" and {len(items) - shown} more" if len(items) > shown else "")


def si(n: float) -> str:
    """1_814_073_344 -> "1.81G"."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def one_line(text: str) -> str:
    """``text`` with its line breaks written as escapes (``\\n``), for a one-line error."""
    return text.translate(_LINE_BREAKS)


def pct(v: Any) -> str:
    """A 0..1 fraction as a percentage with two decimals; a dash for a missing one."""
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "–"
