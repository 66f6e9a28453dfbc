"""Turning an analysis's JSON into tiles and tables without knowing the analysis: the tables are read
off the shape of the JSON (scalars, short lists, lists of records, tables of tables, equally long
columns), short values become (key, text) tiles, and anything else is named with its size so the page
can say what it left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .. import text

SHORT = 12  # at most this many items for a list or dict to count as short enough for one table cell
SHORT_TEXT = 90  # ...and at most this many characters once written out
MAX_ROWS = 60  # a list of records longer than this is left to the JSON
MAX_DEPTH = 2  # how deep into nested dicts the numbers are looked for
FLATTEN = 4  # a dict of at most this many scalars is shown as "key › inner key" tiles


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def fmt(v: Any, si: bool = True) -> str:
    """A JSON value as text for a table cell: ints with thousands separators (and, with ``si``, G or M
    for the big ones, which are MACs and parameter counts), floats to four significant digits."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) < 1_000_000 or not si else f"{v:,} ({text.si(v)})"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, list):
        return ", ".join(fmt(x, si) for x in v) if v else "(empty)"
    return str(v)


def _is_short(v: Any) -> bool:
    """A value that fits one cell: a scalar, or a short list of scalars."""
    if _is_scalar(v):
        return not isinstance(v, str) or len(v) <= 4 * SHORT_TEXT
    return (
        isinstance(v, list)
        and len(v) <= SHORT
        and all(_is_scalar(x) for x in v)
        and len(fmt(v)) <= SHORT_TEXT
    )


def _describe(v: Any) -> str:
    """What a value left out of the tables is, e.g. "10 x 10 list"."""
    if isinstance(v, list):
        shape, inner = [len(v)], v
        while inner and isinstance(inner[0], list):
            inner = inner[0]
            shape.append(len(inner))
        return f"{' x '.join(map(str, shape))} list" if len(shape) > 1 else f"list of {len(v)}"
    if isinstance(v, dict):
        return f"{len(v)} entries"
    return f"{len(str(v))} characters"


@dataclass
class Table:
    """A table read off an analysis's JSON: a caption, a header and rows of JSON values."""

    caption: str
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Numbers:
    scalars: list[tuple[str, str]] = field(default_factory=list)  # ("best › k", "3")
    tables: list[Table] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "matrix (10 x 10 list)"


def _records_table(caption: str, rows: list[dict[str, Any]]) -> Table | None:
    """A list of records (dicts) as a table, one column per key whose values all fit a cell."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    columns = [k for k in keys if all(_is_short(row.get(k)) for row in rows)]
    if not columns:
        return None
    return Table(caption, columns, [[row.get(k) for k in columns] for row in rows])


def _grid_table(caption: str, d: dict[str, Any]) -> Table | None:
    """``{"l2": {"1": 0.93, "3": 0.94}, "cosine": {...}}`` as a table: a column per outer key, a row per
    inner key. Returns None when ``d`` is not a small table of tables."""
    if not d or len(d) > SHORT or not all(isinstance(v, dict) and v for v in d.values()):
        return None
    inner: list[str] = []
    for v in d.values():
        inner += [k for k in v if k not in inner]
    if len(inner) > MAX_ROWS or not all(_is_short(x) for v in d.values() for x in v.values()):
        return None
    return Table(caption, ["", *d], [[k, *(v.get(k) for v in d.values())] for k in inner])


def _columns_table(caption: str, d: dict[str, Any]) -> Table | None:
    """``{"stored": [500, 1000], "seconds": [0.01, 0.02]}``: equally long lists of scalars as columns."""
    lists = list(d.values())
    if not d or not all(isinstance(v, list) and all(_is_scalar(x) for x in v) for v in lists):
        return None
    n = len(lists[0])
    if n == 0 or n > MAX_ROWS or any(len(v) != n for v in lists):
        return None
    return Table(caption, list(d), [[v[i] for v in lists] for i in range(n)])


def numbers(data: Any) -> Numbers:
    """The tables of an analysis's JSON: its short values as (key, text) pairs, the lists of records
    and tables of tables it holds as tables, and the name and size of anything else."""
    out = Numbers()
    if not isinstance(data, dict):
        if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            table = _records_table("rows", data[:MAX_ROWS])
            if table:
                out.tables.append(table)
                return out
        out.left_out.append(f"the JSON ({_describe(data)})")
        return out

    def walk(d: dict[str, Any], prefix: str, depth: int) -> None:
        for key, value in d.items():
            label = f"{prefix}{key}"
            if _is_short(value):
                out.scalars.append((label, fmt(value)))
            elif isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                table = _records_table(label, value) if len(value) <= MAX_ROWS else None
                if table:
                    out.tables.append(table)
                    keys = dict.fromkeys(k for row in value for k in row)
                    out.left_out += [f"{label} › {k} (in every row)" for k in keys if k not in table.header]
                else:
                    out.left_out.append(f"{label} ({len(value)} records)")
            elif isinstance(value, dict):
                table = _grid_table(label, value) or _columns_table(label, value)
                if table:
                    out.tables.append(table)
                elif len(value) > FLATTEN and all(_is_scalar(v) for v in value.values()):
                    # A value per class, say: a row of them when they fit across, else a column.
                    if len(value) <= SHORT:
                        out.tables.append(Table(label, list(value), [list(value.values())]))
                    else:
                        out.tables.append(Table(label, ["", "value"], [[k, v] for k, v in value.items()]))
                elif depth < MAX_DEPTH:
                    walk(value, f"{label} › ", depth + 1)
                else:
                    out.left_out.append(f"{label} ({_describe(value)})")
            else:
                out.left_out.append(f"{label} ({_describe(value)})")

    walk(data, "", 1)
    return out
