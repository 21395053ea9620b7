"""``results.csv``: one row per epoch with YOLOv5's column names, written by global rank 0."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

METRIC_COLUMNS = (
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
)
"""YOLOv5's seven validation results, in its order (also ``evolve.csv``'s first columns)."""

COLUMNS = (
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    *METRIC_COLUMNS,
    "x/lr0",
    "x/lr1",
    "x/lr2",
    "fitness",
)


class ResultsCSV(Callback):
    """Append the epoch's metrics to ``<run>/results.csv`` after each training epoch (validation included).

    A resumed fit keeps appending to the same file; rows of epochs at or after the resumed epoch are dropped first
    so a run interrupted after writing a row never lists an epoch twice.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "results.csv"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_train_start, not on_fit_start: only here has a resumed fit restored its epoch counter
        if trainer.is_global_zero and self.path.is_file():
            self._truncate(trainer.current_epoch)

    def _truncate(self, epoch: int) -> None:
        with self.path.open(newline="") as f:
            rows = [row for row in csv.DictReader(f) if int(row.get("epoch", 0)) < epoch]
        self._write(rows, mode="w")

    def _write(self, rows: list[dict], mode: str) -> None:
        new = mode == "w" or not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open(mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=("epoch", *COLUMNS))
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        lrs = {f"x/lr{i}": group["lr"] for i, group in enumerate(trainer.optimizers[0].param_groups)}
        for column in COLUMNS:
            value = lrs[column] if column in lrs else metrics.get(column)
            row[column] = f"{float(value):.5g}" if value is not None else ""
        self._write([row], mode="a")
