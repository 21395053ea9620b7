"""YOLOv5's early stopping (``--patience``): stop when fitness has not improved for ``patience`` epochs."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

log = logging.getLogger("lightning_yolo")

FITNESS_KEY = "fitness"


class EarlyStopping(Callback):
    """Stop the fit once ``patience`` epochs have passed since the best fitness, as YOLOv5's ``EarlyStopping``.

    An epoch whose fitness equals the best counts as an improvement (YOLOv5 compares with ``>=``), so a fresh
    model whose fitness stays 0 for a while is not stopped. Epochs without validation (``--noval``) are not
    judged. The best epoch is part of the callback's state, so a resumed fit keeps counting from it.

    Lightning's ``EarlyStopping`` counts strictly better validations instead; this keeps YOLOv5's numbers.

    Args:
        patience: Epochs without improvement before stopping; 0 never stops (YOLOv5's ``--patience 0``).
    """

    def __init__(self, patience: int = 100) -> None:
        self.patience = patience
        self.best_fitness = -math.inf
        self.best_epoch = 0
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(FITNESS_KEY)
        if self.patience <= 0 or trainer.sanity_checking or value is None or trainer.state.fn != "fit":
            return
        epoch, fitness = trainer.current_epoch, float(value)
        if fitness >= self.best_fitness:
            self.best_fitness, self.best_epoch = fitness, epoch
        if epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            trainer.should_stop = True
            log.info(
                "Stopping training early as no improvement observed in last %d epochs. Best results observed at "
                "epoch %d (fitness %.4f), best model saved as best.ckpt. Pass --patience N to wait longer, or "
                "--patience 0 to disable early stopping.",
                self.patience,
                self.best_epoch,
                self.best_fitness,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best_fitness": self.best_fitness, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_fitness = float(state_dict.get("best_fitness", -math.inf))
        self.best_epoch = int(state_dict.get("best_epoch", 0))
