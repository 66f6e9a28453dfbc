"""Experiment logging beyond metrics.csv: TensorBoard event files (``--log tensorboard``).

The loss and learning rate go out every ``every`` optimizer steps, each epoch's metrics at its end;
the x axis is the optimizer step throughout, so the step and epoch curves line up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import CnnlabError

LOGS = ("tensorboard",)  # --log
LOG_DIR = "tensorboard"  # inside the run directory


def check_available(log: str | None) -> None:
    """Before the run directory is created: the package a --log needs, or one line naming it."""
    if log == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise CnnlabError(
            "--log tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]'"
        )


class StepLog:
    """Writes a run's scalars under ``run_dir/tensorboard``; a step is counted from the first epoch's
    first (1-based), so a resumed run continues its curves where they stopped."""

    def __init__(self, run_dir: Path, steps_per_epoch: int, every: int, epochs_done: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the optional extra: imported only when asked

        # A resumed run drops what an interrupted one logged after its last checkpoint: those steps
        # are trained again.
        purge = epochs_done * steps_per_epoch + 1 if epochs_done else None
        self.writer = SummaryWriter(str(run_dir / LOG_DIR), purge_step=purge)
        self.steps_per_epoch, self.every = steps_per_epoch, every

    def step(self, epoch: int, step: int, loss: float, lr: float) -> None:
        """After ``step`` (1-based) of ``epoch``: every ``every``-th step's loss and rate."""
        if step % self.every == 0:
            at = (epoch - 1) * self.steps_per_epoch + step
            self.writer.add_scalar("step/train_loss", loss, at)
            self.writer.add_scalar("step/lr", lr, at)

    def epoch(self, row: dict[str, Any]) -> None:
        """An epoch's row of metrics.csv, each number under ``epoch/``."""
        at = int(row["epoch"]) * self.steps_per_epoch
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, at)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
