"""Small functions the blocks and the model families share."""

from __future__ import annotations


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (hardware-friendly widths), never
    below ``min_value`` (default ``divisor``); if that loses more than ``1 - round_limit`` of
    ``value``, go up one step (EfficientNet's 90% rule; timm's SE widths use ``round_limit=0``)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded
