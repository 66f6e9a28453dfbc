"""Training: the loop, its recipes, and the run directory it writes."""

from .finetune import init_from_run
from .loop import TrainConfig, fit, resume
from .rundir import load_run

__all__ = ["TrainConfig", "fit", "init_from_run", "load_run", "resume"]
