"""`cnnlab models [PATTERN]`: the registered models, or one model's description in full."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..errors import CnnlabError
from .common import JSON


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..models import describe_models

    rows = describe_models(args.pattern)
    if not rows:
        raise CnnlabError(f"no model matches {args.pattern!r}; see `cnnlab models`")
    return {"models": rows}


def show(result: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result["models"]
    console = Console()
    if len(rows) == 1:  # one model: the whole paragraph
        r = rows[0]
        console.print(
            f"[bold]{r['name']}[/bold] ({r['family']}): {r['params']:,} parameters for 1000 classes; "
            f"input {'x'.join(map(str, r['default_input_size']))}, at least "
            f"{r['min_input_size']}x{r['min_input_size']}\n{r['description']}\n"
            f"training recipe (each a `cnnlab train` flag): {_recipe(r['recipe'])}\n{_paper(r)}",
            highlight=False,
        )
        return
    table = Table(title=f"{len(rows)} models (parameters for 1000 classes, 3 channels)")
    for col, justify in (
        ("name", "left"),
        ("family", "left"),
        ("params", "right"),
        ("min input", "right"),
        ("description", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        first_sentence = re.split(r"(?<!et al)\.\s", r["description"], maxsplit=1)[0].rstrip(".") + "."
        table.add_row(
            r["name"],
            r["family"],
            f"{r['params']:,}",
            f"{r['min_input_size']}x{r['min_input_size']}",
            first_sentence,
        )
    console.print(table)
    console.print("`cnnlab models NAME` prints one model's description in full.")


def _recipe(recipe: dict[str, Any]) -> str:
    """``--optimizer sgd, --lr 0.1 (at batch 128), ...``: the recipe as the flags that override it."""
    from ..models.recipe import ABOUT, BATCH, SCHEDULE_FIELDS

    words = []
    for name, value in recipe.items():
        flag = f"--{name.replace('_', '-')}"
        unused = recipe["schedule"] not in SCHEDULE_FIELDS.get(name, (recipe["schedule"],))
        if name in ABOUT or value is None or unused:
            continue
        if name == "model_args":
            words += [f"--model-arg {key}={arg}" for key, arg in value]
        elif isinstance(value, bool):
            words.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, (list, tuple)):
            words.append(f"{flag} {' '.join(f'{v:g}' for v in value)}")
        else:
            words.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
            words[-1] += f" (at batch {recipe['batch_size'] or BATCH})" if name == "lr" else ""
    return ", ".join(words)


def _paper(row: dict[str, Any]) -> str:
    """The paper's recipe, where the model has one, with what the paper reports."""
    paper = row.get("paper_recipe")
    if paper is None:
        return "no paper recipe (`--recipe paper` is refused)"
    about = "; ".join(f"{key}: {paper[key]}" for key in ("data", "reports", "source", "notes") if paper[key])
    return f"paper recipe (`--recipe paper`): {_recipe(paper)}\n{about}"


def add(sub: Any) -> None:
    p = sub.add_parser("models", parents=[JSON], help="list the registered models")
    p.add_argument("pattern", nargs="?", help="a shell pattern, e.g. 'resnet*'")
    p.set_defaults(func=run, show=show)
