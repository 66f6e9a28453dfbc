"""What every analysis shares: its NAME.json (the numbers) and NAME.png (the figure), written into an
output directory, ./analysis unless told otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..plots import pyplot

DEFAULT_OUT = "analysis"


def write_outputs(
    out_dir: str | os.PathLike[str], name: str, result: dict[str, Any], fig: Any
) -> dict[str, str]:
    """Write ``<name>.json`` and ``<name>.png`` (closing the figure); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out / f"{name}.json"), "png": str(out / f"{name}.png")}
    Path(paths["json"]).write_text(json.dumps(result, indent=2) + "\n")
    fig.savefig(paths["png"], dpi=120)
    pyplot().close(fig)
    return paths
