"""What every command shares: the one-line-error parser and the ways of printing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage plus message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _wide_console() -> Console:
    """A console for wide tables: off a terminal rich assumes 80 columns and would cut layer names."""
    console = Console()
    return console if console.is_terminal else Console(width=150)


def _si(n: int | float) -> str:
    """1_814_073_344 -> "1.81G"."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _print_files(console: Console, result: dict[str, Any]) -> None:
    console.print(f"wrote {result['files']['json']} and {result['files']['png']}", highlight=False)
