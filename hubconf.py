"""torch.hub entry points: every registered cnnlab model, by its name.

    model = torch.hub.load("path/to/cnnlab", "resnet20", source="local", num_classes=10, in_chans=1)
    model = torch.hub.load("path/to/cnnlab", "resnet20", source="local", run="runs/resnet20-mnist5k-...")

Keyword arguments go to ``cnnlab.create_model``; ``run`` names a run directory instead, whose trained
weights are loaded (in eval mode, as ``cnnlab.load_run`` gives them).
"""

from __future__ import annotations

# Every public callable here is an entry point (torch.hub.list shows them), hence the private names.
import sys as _sys
from pathlib import Path as _Path
from typing import Any as _Any

dependencies = ["torch", "numpy", "PIL", "safetensors", "rich", "matplotlib"]

# The checkout's own sources, before any cnnlab installed elsewhere: torch.hub.load(CHECKOUT, ...)
# means this checkout's models.
_SRC = _Path(__file__).resolve().parent / "src"
if (_SRC / "cnnlab").is_dir() and str(_SRC) not in _sys.path:
    _sys.path.insert(0, str(_SRC))

import cnnlab as _cnnlab  # noqa: E402

_CnnlabError = _cnnlab.CnnlabError


def _entry(name: str) -> _Any:
    def build(run: str | None = None, **kwargs: _Any) -> _Any:
        if run is None:
            return _cnnlab.create_model(name, **kwargs)
        if kwargs:
            raise _CnnlabError(f"a run's model is built as it was trained: drop {', '.join(sorted(kwargs))}")
        trained = _cnnlab.rundir.read_config(run).model
        if trained != name:
            raise _CnnlabError(f"{run} holds a {trained}, not a {name}: load it as {trained!r}")
        return _cnnlab.load_run(run)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"cnnlab's {name}: create_model({name!r}, **kwargs), or the trained weights of ``run``."
    return build


globals().update({name: _entry(name) for name in _cnnlab.list_models()})
