"""What every analysis shares: its NAME.json (the numbers) and NAME.png (the figure), written into an
output directory, ./analysis unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..plots import png_bytes
from ..rundir import atomic_write, write_json

DEFAULT_OUT = "analysis"


def write_outputs(
    out_dir: str | os.PathLike[str], name: str, result: dict[str, Any], fig: Any
) -> dict[str, str]:
    """Write ``<name>.json`` and ``<name>.png`` (closing the figure), each whole or not at all, or
    say in one line why they cannot be; returns their paths."""
    out = Path(out_dir)
    paths = {"json": str(out / f"{name}.json"), "png": str(out / f"{name}.png")}
    write_json(Path(paths["json"]), result)
    atomic_write(Path(paths["png"]), png_bytes(fig))
    return paths
