"""The HTML pieces every part of the report's page shares: an embedded figure, a percentage, a table."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from .tables import Table, fmt


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes | None, alt: str, caption: str = "", path: Path | None = None) -> str:
    if png is None:
        return f'<p class="note warn">{escape(alt)}: no readable figure.</p>'
    where = f'<br><span class="path">{escape(str(path))}</span>' if path else ""
    cap = f"<figcaption>{escape(caption)}{where}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{escape(alt)}">{cap}</figure>'


def table_html(table: Table) -> str:
    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    # A column of numbers is right-aligned, header too, so that the digits line up.
    numeric = [
        any(is_number(row[j]) for row in table.rows)
        and all(is_number(row[j]) or row[j] is None for row in table.rows)
        for j in range(len(table.header))
    ]
    cls = [' class="num"' if n else "" for n in numeric]
    # Long snake_case headers may break after an underscore; the cells never break, a wide table scrolls.
    head = "".join(
        f"<th{c}>{escape(h).replace('_', '_<wbr>')}</th>" for h, c in zip(table.header, cls, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{c}>{escape(fmt(v, si=False))}</td>" for v, c in zip(row, cls, strict=True))
        + "</tr>"
        for row in table.rows
    )
    return (
        f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
