"""Training: the loop, its recipes, and the run directory it writes."""

from .loop import TrainConfig, fit, resume
from .rundir import load_run

__all__ = ["TrainConfig", "fit", "load_run", "resume"]
