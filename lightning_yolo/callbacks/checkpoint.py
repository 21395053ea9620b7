"""Checkpoints of a run: ``weights/last.ckpt`` every epoch and ``weights/best.ckpt`` at the best fitness."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint


def run_checkpoint(run_dir: str | Path) -> ModelCheckpoint:
    """A ModelCheckpoint writing ``best.ckpt`` (max ``fitness``) and ``last.ckpt`` into ``run_dir/weights``.

    Files are overwritten in place (no ``-v1`` suffixes) so ``best`` and ``last`` always name the current files.
    """
    return ModelCheckpoint(
        dirpath=Path(run_dir) / "weights",
        filename="best",
        monitor="fitness",
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
