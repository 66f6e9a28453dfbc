"""Training: the loop, its optimizers and schedules, fine-tuning and torchrun. Only the CLI's train
verb and the experiments that train import this package."""

from .config import TrainConfig
from .finetune import init_from_run
from .loop import fit, resume

__all__ = ["TrainConfig", "fit", "init_from_run", "resume"]
