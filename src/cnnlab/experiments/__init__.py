"""``cnnlab experiment NAME``: each claim of the course as an experiment that measures it and says
whether the measurement supports it, contradicts it or cannot tell (``claims.py``). One module per
claim; each has ``CLAIM`` (the sentence it tests), ``HELP``, ``run(setup, ...)`` returning the JSON it
writes, ``judge(...)`` (the verdict from the numbers alone) and ``plot(result)``.

Arms that are trained share one budget and three seeds by default (``arms.py``); ``--quick`` runs two
seeds of one epoch on a few hundred digits, for tests. The modules import the trainer only when run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name: module, in the order of the course.
EXPERIMENTS = {
    "templates": "templates",
    "lrn": "lrn",
    "kernels": "kernels",
    "aux": "aux",
    "init": "init",
    "vanishing": "vanishing",
    "degradation": "degradation",
    "paths": "paths",
    "dense-memory": "dense_memory",
    "se": "se",
    "scaling": "scaling",
}


def experiment(name: str) -> ModuleType:
    return importlib.import_module(f".{EXPERIMENTS[name]}", __name__)
