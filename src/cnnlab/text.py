"""How cnnlab words things for people: one-line reasons, short lists, large numbers."""

from __future__ import annotations

from collections.abc import Sequence

SHOWN = 4  # items named in a message; the rest are counted


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
