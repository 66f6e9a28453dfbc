"""Progress of a training: a live rich bar (images/s, ETA) on a terminal, one plain line per epoch
otherwise (logs, CI, pipes)."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..rundir import held_out


class SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} img/s" if task.speed else "– img/s", style="cyan")


def format_epoch(row: dict[str, float], epochs: int) -> str:
    train = (
        "training set stored"  # k-NN: no loss to report
        if math.isnan(row["train_loss"])
        else f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:5.2f}%"
    )
    held = held_out(row)
    return (
        f"epoch {int(row['epoch']):>{len(str(epochs))}}/{epochs}  {train}  "
        f"{held} loss {row[f'{held}_loss']:.4f} acc {100 * row[f'{held}_acc']:5.2f}% "
        f"top5 {100 * row[f'{held}_top5']:5.2f}%  lr {row['lr']:.4f}  {row['seconds']:.1f}s  "
        f"{row['images_per_s']:,.0f} img/s"
    )


class TrainProgress:
    """Use as a context manager around the whole run; ``live`` defaults to "is stdout a terminal"."""

    def __init__(self, epochs: int, live: bool | None = None, quiet: bool = False) -> None:
        self.epochs, self.quiet = epochs, quiet
        self.console = Console(file=sys.stdout)
        self.live = self.console.is_terminal if live is None else live
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            SpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
        )
        self.task: int | None = None

    def __enter__(self) -> TrainProgress:
        if self.live and not self.quiet:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def print(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    def start_epoch(self, epoch: int, images: int) -> None:
        if self.live and not self.quiet:
            self.task = self.progress.add_task(f"epoch {epoch}/{self.epochs}", total=images, status="")

    def advance(self, images: int, loss: float | None) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=images, status="" if loss is None else f"loss {loss:.4f}")

    def end_epoch(self, row: dict[str, float]) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.print(format_epoch(row, self.epochs))
