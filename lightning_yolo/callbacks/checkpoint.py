"""Checkpoints of a run: ``weights/last.ckpt`` after every epoch and ``weights/best.ckpt`` at the best fitness."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint


def run_checkpoints(run_dir: str | Path) -> list[ModelCheckpoint]:
    """Two ModelCheckpoints writing ``best.ckpt`` (max ``fitness``) and ``last.ckpt`` into ``run_dir/weights``.

    ``last`` is its own unmonitored checkpoint because Lightning's ``save_last`` only writes when the monitored
    checkpoint was written in the same step. Files are overwritten in place (no ``-v1`` suffixes), so ``best`` and
    ``last`` always name the current files.
    """
    weights = Path(run_dir) / "weights"
    common = {"dirpath": weights, "save_top_k": 1, "auto_insert_metric_name": False, "enable_version_counter": False}
    best = ModelCheckpoint(filename="best", monitor="fitness", mode="max", **common)
    last = ModelCheckpoint(filename="last", monitor=None, **common)
    return [best, last]
