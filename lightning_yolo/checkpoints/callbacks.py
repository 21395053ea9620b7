"""Checkpoints of a run: ``weights/last.ckpt`` after every epoch and ``weights/best.ckpt`` at the best fitness."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn


class EveryEpochCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that also writes after an epoch in which no optimiser step happened.

    Lightning skips a save when ``trainer.global_step`` (optimiser steps) has not moved since the previous save.
    With YOLOv5's nominal-batch accumulation a small dataset can run whole epochs without a step, yet those
    batches moved BatchNorm statistics, the epoch counter and the accumulation counters: a skipped save would make
    a resume restart from an older epoch and diverge from the uninterrupted run. This checkpoint skips a save only
    when no training batch has run since the previous one.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._batches_at_last_save = -1

    def _should_skip_saving_checkpoint(self, trainer: pl.Trainer) -> bool:
        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or trainer.fit_loop.total_batch_idx == self._batches_at_last_save
        )

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._batches_at_last_save = trainer.fit_loop.total_batch_idx


def run_checkpoints(run_dir: str | Path) -> list[ModelCheckpoint]:
    """Two checkpoints writing ``best.ckpt`` (max ``fitness``) and ``last.ckpt`` into ``run_dir/weights``.

    ``last`` is its own unmonitored checkpoint because Lightning's ``save_last`` only writes when the monitored
    checkpoint was written in the same step; it is written at every epoch end (:class:`EveryEpochCheckpoint`).
    Files are overwritten in place (no ``-v1`` suffixes), so ``best`` and ``last`` always name the current files.
    """
    weights = Path(run_dir) / "weights"
    common = {"dirpath": weights, "save_top_k": 1, "auto_insert_metric_name": False, "enable_version_counter": False}
    best = ModelCheckpoint(filename="best", monitor="fitness", mode="max", **common)
    last = EveryEpochCheckpoint(filename="last", monitor=None, **common)
    return [best, last]
