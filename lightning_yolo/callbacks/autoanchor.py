"""AutoAnchor: check the model's anchors against the training labels before the first step, evolve better ones.

The maths lives in :mod:`lightning_yolo.models.anchors`; this callback gathers the training set's label sizes, runs the
check on global rank 0, broadcasts the outcome so that every process adopts identical anchors, and writes them
into the model, its EMA copy and the loss through ``pl_module.set_anchors``. A resumed fit (``ckpt_path`` given)
keeps the checkpoint's anchors untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lightning_yolo.callbacks.interface import DataModuleWithSplits, DetectorModule
from lightning_yolo.models.anchors import BPR_KEEP, AnchorReport, anchor_fitness, check_anchors, label_wh

log = logging.getLogger(__name__)

__all__ = ["AutoAnchor", "training_labels"]


def training_labels(trainer: pl.Trainer) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Image sizes and labels of the training set (``trainer.datamodule.datasets["train"]``, a
    :class:`~lightning_yolo.callbacks.interface.LabelledDataset`), or None when the fit has no such data module.

    Returns:
        ``(shapes, labels)``: ``(N, 2)`` original ``[width, height]`` of each image, and N arrays ``(n_i, 5)``
        ``[cls, x, y, w, h]`` normalised to their image.
    """
    datamodule: DataModuleWithSplits | None = trainer.datamodule
    if datamodule is None or "train" not in datamodule.datasets:
        return None
    dataset = datamodule.datasets["train"]
    shapes = np.asarray(dataset.shapes_wh).reshape(-1, 2)
    return shapes, [np.asarray(lb, dtype=np.float32).reshape(-1, 5) for lb in dataset.labels]


class AutoAnchor(Callback):
    """Check the anchors' best possible recall (BPR) on the training labels and evolve new anchors below 0.98.

    Runs once at fit start, before the first step; not on a resumed fit (the checkpoint holds the anchors).
    Label sizes are taken at the training image size with one random scale in 0.9-1.1 per image (YOLOv5's scale
    jitter, seeded so that runs repeat); new anchors are fitted to the unjittered sizes with k-means and genetic
    evolution, and adopted only when their BPR is higher. YOLOv5 prints the same summary line.

    Args:
        enabled: Run the check (False is YOLOv5's ``--noautoanchor``).
        imgsz: Training image size; default the model's ``imgsz`` hyperparameter.
        thr: Anchor-to-label ratio threshold; default the model's ``anchor_t`` hyperparameter.
        gen: Generations of genetic evolution.
        seed: Seed of the scale jitter, the k-means starts and the mutations.
    """

    def __init__(
        self, enabled: bool = True, imgsz: int | None = None, thr: float | None = None, gen: int = 1000, seed: int = 0
    ) -> None:
        self.enabled, self.imgsz, self.thr, self.gen, self.seed = enabled, imgsz, thr, gen, seed
        self.report: AnchorReport | None = None
        """The outcome of the last check on this process (global rank 0 only); None when none ran."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: DetectorModule) -> None:  # type: ignore[override]
        if not self.enabled:
            return
        if trainer.ckpt_path is not None:
            log.info("AutoAnchor: resuming from %s, keeping its anchors", trainer.ckpt_path)
            return
        anchors = self._rank_zero_check(trainer, pl_module) if trainer.is_global_zero else None
        anchors = trainer.strategy.broadcast(anchors, src=0)
        if anchors is not None:
            pl_module.set_anchors(anchors.to(pl_module.device))

    def _settings(self, pl_module: DetectorModule) -> tuple[int, float]:
        hparams = pl_module.hparams
        imgsz = self.imgsz if self.imgsz is not None else hparams.get("imgsz", 640)
        thr = self.thr if self.thr is not None else hparams.get("anchor_t", 4.0)
        return int(imgsz), float(thr)

    def _rank_zero_check(self, trainer: pl.Trainer, pl_module: DetectorModule) -> torch.Tensor | None:
        """Run the check; returns the anchors to adopt ``(nl, na, 2)`` in grid units on the CPU, or None."""
        found = training_labels(trainer)
        if found is None:
            log.warning("AutoAnchor: no training dataset with labels and image shapes found, anchors not checked")
            return None
        anchors, stride = pl_module.anchor_grid
        imgsz, thr = self._settings(pl_module)
        self.report = self.check(anchors, stride, found[0], found[1], imgsz, thr)
        if self.report.new_anchors is None:
            return None
        # YOLOv5 rounds the model to half precision after AutoAnchor ("pre-reduce anchor precision")
        return self.report.new_anchors.half().float()

    def check(
        self,
        anchors_grid: torch.Tensor,
        stride: torch.Tensor,
        shapes: np.ndarray,
        labels: Sequence[np.ndarray],
        imgsz: int,
        thr: float,
    ) -> AnchorReport:
        """Judge ``anchors_grid (nl, na, 2)`` on the labels and evolve new ones when needed; logs the outcome.

        Args:
            anchors_grid: current anchors in grid units.
            stride: ``(nl,)`` strides of the levels.
            shapes: ``(N, 2)`` original ``[width, height]`` of the images.
            labels: N arrays ``(n_i, 5)`` of normalised ``[cls, x, y, w, h]``.
            imgsz: training image size.
            thr: anchor-to-label ratio threshold.
        """
        anchors_grid, stride = anchors_grid.detach().cpu().float(), stride.detach().cpu().float()
        wh = label_wh(shapes, labels, imgsz, jitter=(0.9, 1.1), rng=np.random.default_rng(self.seed))
        bpr, _ = anchor_fitness(anchors_grid * stride.view(-1, 1, 1), wh, thr)
        if len(wh) and not bpr > BPR_KEEP:
            log.info("AutoAnchor: BPR %.3f, anchors are a poor fit to the dataset, attempting to improve...", bpr)
        report = check_anchors(
            anchors_grid,
            stride,
            wh,
            thr=thr,
            imgsz=imgsz,
            gen=self.gen,
            rng=np.random.default_rng(self.seed),
            wh_fit=label_wh(shapes, labels, imgsz, jitter=None),
        )
        log.info(report.summary())
        return report
