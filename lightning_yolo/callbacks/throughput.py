"""Training throughput in images per second, in the progress bar and logged once per epoch."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

__all__ = ["Throughput", "batch_images"]


def batch_images(batch: Any) -> int:
    """Images in a batch: the length of its ``img`` tensor (or of its first tensor), 0 when there is none."""
    if isinstance(batch, dict):
        tensor = batch.get("img")
        if tensor is None:
            tensor = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    elif isinstance(batch, (list, tuple)):
        tensor = next((v for v in batch if isinstance(v, torch.Tensor)), None)
    else:
        tensor = batch if isinstance(batch, torch.Tensor) else None
    return int(tensor.shape[0]) if tensor is not None and tensor.ndim else 0


class Throughput(Callback):
    """Images per second of each training epoch, from its start to its last batch (data loading included,
    validation excluded).

    The epoch's rate is logged as ``key`` summed over processes (the global rate); the progress bar shows this
    process's running rate as ``img/s``.

    Args:
        key: Name of the logged epoch rate.
        prog_bar: Show the running rate in the progress bar.
    """

    def __init__(self, key: str = "x/images_per_s", prog_bar: bool = True) -> None:
        self.key, self.prog_bar = key, prog_bar
        self._start = self._last = 0.0
        self._images = 0

    def rate(self) -> float:
        """This process's images per second so far in the current epoch (0 before its first batch ends)."""
        elapsed = self._last - self._start
        return self._images / elapsed if self._images and elapsed > 0 else 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._images = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += batch_images(batch)
        self._last = time.perf_counter()
        if self.prog_bar:
            pl_module.log("img/s", self.rate(), on_step=True, on_epoch=False, prog_bar=True, logger=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._images:
            pl_module.log(self.key, self.rate(), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum")
