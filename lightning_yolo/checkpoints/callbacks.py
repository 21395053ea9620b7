"""The checkpoint policy of a run: ``weights/last.ckpt`` after every training epoch, ``weights/best.ckpt`` at the
best fitness, written with Lightning's public ``trainer.save_checkpoint``.

Why not Lightning's ``ModelCheckpoint``: it skips a save when ``trainer.global_step`` (optimiser steps) has not moved
since the previous one. With YOLOv5's nominal-batch accumulation a small dataset runs whole epochs without a step,
yet those batches moved BatchNorm statistics, the epoch counter and the accumulation counters; a skipped save would
make a resume restart from an older epoch and diverge from the uninterrupted run. This callback saves once per
training epoch, always.

It subclasses Lightning's ``Checkpoint``, so Lightning runs its ``on_train_epoch_end`` after the module's own (the
learning-rate schedule has stepped and the EMA attributes are updated when the file is written), as it does for
``ModelCheckpoint``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

from lightning_yolo.checkpoints.files import atomic_write_bytes

FITNESS_KEY = "fitness"
"""The logged metric that ranks checkpoints: ``0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95`` (YOLOv5's)."""


class RunCheckpoints(Checkpoint):
    """Write ``last.ckpt`` at every training-epoch end and copy it to ``best.ckpt`` when fitness improves.

    The best fitness is part of the callback's state, so a resumed fit keeps comparing against it. Both files are
    overwritten in place: ``last`` and ``best`` always name the current files. An epoch without validation (no
    ``fitness`` logged) only updates ``last``.

    Loggers hear of every save through their public ``after_save_checkpoint`` hook, as from ``ModelCheckpoint``;
    the attributes ``monitor``, ``mode``, ``save_top_k``, ``last_model_path``, ``best_model_path``,
    ``current_score`` and ``best_model_score`` carry ``ModelCheckpoint``'s meaning, so that ``WandbLogger(log_model=
    True)`` uploads ``last`` and ``best`` as artifacts at the end of the fit.

    Args:
        dirpath: The run's ``weights`` folder.
        save_period: Also keep ``epoch{N}.ckpt`` every ``save_period`` epochs (0-based epochs 0, N, 2N, ... as
            YOLOv5's ``--save-period``); 0 or less keeps none.
        final_only: Write ``last`` and ``best`` only after the final epoch (YOLOv5's ``--nosave``): a fit cut short
            cannot be resumed.
    """

    monitor = FITNESS_KEY
    mode = "max"
    save_top_k = 1

    def __init__(self, dirpath: str | Path, save_period: int = -1, final_only: bool = False) -> None:
        self.dirpath = Path(dirpath)
        self.save_period, self.final_only = save_period, final_only
        self.best_fitness = -math.inf
        self.best_epoch: int | None = None
        self.current_score: float | None = None
        self.saved_epoch: int | None = None
        """The epoch whose end ``last.ckpt`` holds, once this process wrote it."""

    @property
    def last_path(self) -> Path:
        """``<dirpath>/last.ckpt``."""
        return self.dirpath / "last.ckpt"

    @property
    def best_path(self) -> Path:
        """``<dirpath>/best.ckpt``."""
        return self.dirpath / "best.ckpt"

    @property
    def last_model_path(self) -> str:
        """``last_path`` as a string once written, else ``""`` (``ModelCheckpoint``'s convention)."""
        return str(self.last_path) if self.last_path.is_file() else ""

    @property
    def best_model_path(self) -> str:
        """``best_path`` as a string once a best epoch exists, else ``""``."""
        return str(self.best_path) if self.best_epoch is not None and self.best_path.is_file() else ""

    @property
    def best_model_score(self) -> float | None:
        """The best fitness so far; None before any validation."""
        return self.best_fitness if self.best_epoch is not None else None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        improved = self._improved(trainer)
        epoch = trainer.current_epoch
        final = trainer.should_stop or (trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs)
        if self.final_only and not final:
            return
        trainer.save_checkpoint(
            self.last_path, weights_only=False
        )  # every rank calls it; the strategy writes on global rank 0
        self.saved_epoch = epoch
        copies = [self.best_path] if improved else []
        if self.save_period > 0 and epoch % self.save_period == 0:
            copies.append(self.dirpath / f"epoch{epoch}.ckpt")
        if copies:
            if trainer.is_global_zero:
                data = self.last_path.read_bytes()
                for path in copies:
                    atomic_write_bytes(data, path)
            trainer.strategy.barrier("checkpoint-copies")
        for logger in trainer.loggers:
            logger.after_save_checkpoint(self)

    def _improved(self, trainer: pl.Trainer) -> bool:
        """Whether this epoch's fitness beats the best so far (recorded before ``last`` is written, so that the
        saved state already holds the new best)."""
        value = trainer.callback_metrics.get(FITNESS_KEY)
        if value is None:
            return False
        fitness = self.current_score = float(value)
        if not fitness > self.best_fitness:
            return False
        self.best_fitness, self.best_epoch = fitness, trainer.current_epoch
        return True

    def interruption_note(self, trainer: pl.Trainer) -> str:
        """Where an interrupted fit stopped and how to continue it, for the message the command line prints."""
        if self.saved_epoch is not None:
            resume = f"{self.last_path} holds the end of epoch {self.saved_epoch}"
        elif self.last_path.is_file():
            resume = f"{self.last_path} holds the checkpoint this fit resumed from"
        else:
            resume = "no checkpoint was written yet"
        hint = "continue with --ckpt_path last" if self.last_path.is_file() else "start the fit again"
        return f"fit interrupted in epoch {trainer.current_epoch} (step {trainer.global_step}): {resume}; {hint}"

    def state_dict(self) -> dict[str, Any]:
        return {"best_fitness": self.best_fitness, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_fitness = float(state_dict.get("best_fitness", -math.inf))
        self.best_epoch = state_dict.get("best_epoch")
