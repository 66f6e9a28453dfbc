"""Which weights a run keeps, and when it stops: chosen on the validation set, never on the test set.

``--keep best`` keeps the epoch with the highest validation accuracy (the first, on a tie);
``--patience N`` stops after N epochs without a higher one, as Keras' EarlyStopping and Lightning's do.
Both read only the rows of metrics.csv and the best weights, which the checkpoint holds, so a resumed
run chooses as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def best_epoch(rows: list[dict[str, float]]) -> int:
    """The first epoch with the highest validation accuracy."""
    return int(max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))["epoch"])


@dataclass
class Selection:
    keep: str = "last"  # config.KEEPS
    patience: int | None = None
    best: dict[str, torch.Tensor] | None = None  # the kept model's state at the best epoch

    def after_epoch(self, rows: list[dict[str, float]], kept: nn.Module) -> None:
        """Copies the kept model's state when the epoch just trained is the best so far."""
        if self.keep == "best" and best_epoch(rows) == rows[-1]["epoch"]:
            # On the CPU: the copy should not double the accelerator memory the weights take.
            self.best = {k: v.detach().to("cpu", copy=True) for k, v in kept.state_dict().items()}

    def stops(self, rows: list[dict[str, float]]) -> bool:
        """Whether ``patience`` epochs have passed without a better validation accuracy."""
        return bool(self.patience and rows and rows[-1]["epoch"] - best_epoch(rows) >= self.patience)

    def restore(self, kept: nn.Module) -> None:
        """Puts the best epoch's weights into the kept model (``keep`` "best")."""
        if self.best is not None:
            kept.load_state_dict(self.best)

    def describe(self, rows: list[dict[str, float]], epochs: int) -> dict[str, Any]:
        """result.json's account of the weights kept: which epoch's, chosen how, and whether the run
        stopped before its planned epochs."""
        validated = "val_acc" in rows[-1]
        epoch = best_epoch(rows) if self.keep == "best" else int(rows[-1]["epoch"])
        row = rows[epoch - 1]
        return {
            "weights": self.keep,
            "epoch": epoch,
            "chosen_on": "validation accuracy" if self.keep == "best" else None,
            **({"val_acc": row["val_acc"], "val_loss": row["val_loss"]} if validated else {}),
            "stopped_early": len(rows) < epochs,
        }
