"""The analyses and experiments behind ``cnnlab analyze``, ``cnnlab experiment``, ``cnnlab compare`` and
``cnnlab summary``: one module each, whose entry point computes the numbers, draws the figure, writes
``NAME.json`` and ``NAME.png`` (``output.write_outputs``) and returns the numbers.

``compare`` with ``train=True`` imports the trainer only when called, so that importing this package
stays light. The experiments that test the course's claims over seeds are in ``cnnlab.experiments``.
"""

from .compare import compare
from .inception import analyze_inception
from .knn import analyze_knn
from .offsets import analyze_offsets
from .paths import analyze_paths
from .rf import analyze_rf
from .scaling import analyze_scaling
from .se import analyze_se
from .summary import summarize
from .templates import analyze_templates

__all__ = [
    "analyze_inception",
    "analyze_knn",
    "analyze_offsets",
    "analyze_paths",
    "analyze_rf",
    "analyze_scaling",
    "analyze_se",
    "analyze_templates",
    "compare",
    "summarize",
]
