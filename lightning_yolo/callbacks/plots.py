"""YOLOv5's run pictures, written by global rank 0 into the run folder and handed to the loggers.

- fit start: ``labels.jpg`` and ``labels_correlogram.jpg`` from the training labels;
- the first training batches of a new fit: ``train_batch0.jpg`` ... (augmented images with their labels);
- the end of the fit (or of ``validate`` / ``test``), from the last validation: ``val_batch{i}_labels.jpg`` and
  ``val_batch{i}_pred.jpg`` for its first batches, ``PR_curve.png``, ``F1_curve.png``, ``P_curve.png``,
  ``R_curve.png`` (only when some detection was a true positive, as in YOLOv5), ``confusion_matrix.png``, and
  ``results.png`` drawn from ``results.csv``.

Validation batches and results are kept in memory at every validation (the first ``max_subplots`` images of
each of the first batches) and drawn once at the end, so the pictures match the final metrics without drawing
every epoch. W&B loggers receive every picture (keys ``Labels/<name>``, ``Mosaics/<name>``,
``Validation/<name>``, ``Results/<name>``); TensorBoard loggers receive the end-of-run pictures, as YOLOv5 does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from lightning_yolo.callbacks.autoanchor import training_labels
from lightning_yolo.callbacks.interface import DetectorModule

log = logging.getLogger(__name__)

__all__ = ["CURVE_FILES", "RunPlots"]

CURVE_FILES = {"PR": "PR_curve.png", "F1": "F1_curve.png", "P": "P_curve.png", "R": "R_curve.png"}
"""Curve pictures by short name."""


@dataclass
class _Batch:
    """The part of an evaluation batch that gets drawn, on the CPU."""

    images: torch.Tensor  # (b, 3, H, W) uint8
    targets: torch.Tensor  # (n, 6) [image, cls, x, y, w, h] normalised
    paths: list[str]
    predictions: np.ndarray  # (m, 7) [image, cls, x, y, w, h, conf] pixels


def _keep_batch(batch: dict[str, Any], detections: list[torch.Tensor], max_images: int) -> _Batch:
    """CPU copy of the first ``max_images`` images of a batch with their labels and detections."""
    from lightning_yolo.plots import predictions_to_targets

    targets = batch["targets"].detach()
    targets = targets[targets[:, 0] < max_images].cpu()
    predictions = predictions_to_targets([d.detach().cpu() for d in detections[:max_images]])
    return _Batch(batch["img"][:max_images].detach().cpu(), targets, list(batch["paths"][:max_images]), predictions)


class RunPlots(Callback):
    """Write YOLOv5's label, batch, curve, confusion-matrix and results pictures into the run folder.

    Args:
        save_dir: Folder for the pictures; default the run folder, ``trainer.default_root_dir``.
        labels: Draw the label pictures at fit start.
        train_batches: Training batches drawn at the start of a new fit (YOLOv5 draws 3).
        val_batches: Validation batches drawn with labels and with predictions (YOLOv5 draws 3).
        max_subplots: Images per batch picture (16 gives a 4x4 grid).
        log_images: Hand the pictures to the W&B and TensorBoard loggers.
        enabled: Draw anything at all (False is YOLOv5's ``--noplots``).
    """

    def __init__(
        self,
        save_dir: str | None = None,
        labels: bool = True,
        train_batches: int = 3,
        val_batches: int = 3,
        max_subplots: int = 16,
        log_images: bool = True,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.labels, self.train_batches, self.val_batches = labels, train_batches, val_batches
        self.max_subplots, self.log_images = max_subplots, log_images
        self._batches: dict[int, _Batch] = {}
        self._results: dict[str, torch.Tensor] | None = None
        self._curves: Any = None  # the APResult of the last evaluation, None when nothing was a true positive
        self.written: list[Path] = []
        """Every picture written, in order."""

    # ------------------------------------------------------------------------------------------------ folders
    def _dir(self, trainer: pl.Trainer) -> Path:
        return self.save_dir if self.save_dir is not None else Path(trainer.default_root_dir)

    def _record(self, paths: list[Path]) -> list[Path]:
        self.written.extend(p for p in paths if p not in self.written)
        return paths

    # ------------------------------------------------------------------------------------------------ fit start
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.enabled and self.labels and trainer.is_global_zero):
            return
        found = training_labels(trainer)
        if found is None:
            log.warning("plots: no training labels found, labels.jpg not written")
            return
        from lightning_yolo.plots import plot_labels

        labels = np.concatenate([np.zeros((0, 5), np.float32), *found[1]])  # (n, 5) [cls, x, y, w, h]
        paths = self._record(plot_labels(labels, pl_module.names, self._dir(trainer)))
        self._log(trainer, "Labels", paths, tensorboard=False)

    # ------------------------------------------------------------------------------------------------ training
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # YOLOv5 draws the first iterations of a fit: a fit resumed after epoch 0 draws none
        if not self.enabled or trainer.current_epoch > 0 or batch_idx >= self.train_batches:
            return
        if not trainer.is_global_zero:
            return
        from lightning_yolo.plots import plot_images

        fname = self._dir(trainer) / f"train_batch{batch_idx}.jpg"
        plot_images(batch["img"], batch["targets"], batch["paths"], pl_module.names, fname, 1920, self.max_subplots)
        self._record([fname])
        if batch_idx + 1 == min(self.train_batches, trainer.num_training_batches):
            files = [self._dir(trainer) / f"train_batch{i}.jpg" for i in range(batch_idx + 1)]
            self._log(trainer, "Mosaics", [f for f in files if f.is_file()], tensorboard=False)

    # ------------------------------------------------------------------------------------------------ evaluation
    def _keep(self, trainer: pl.Trainer, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero or dataloader_idx != 0:
            return
        if batch_idx < self.val_batches and isinstance(outputs, dict) and "detections" in outputs:
            self._batches[batch_idx] = _keep_batch(batch, outputs["detections"], self.max_subplots)

    def _on_evaluation_start(self, trainer: pl.Trainer) -> None:
        if not trainer.sanity_checking:
            self._batches = {}

    def _on_evaluation_end(self, trainer: pl.Trainer, pl_module: DetectorModule) -> None:
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero:
            return
        results = pl_module.last_results
        self._results = {k: v.detach().cpu() for k, v in results.items()} if results else None
        self._curves = pl_module.last_curves
        if trainer.state.fn != "fit":  # validate / test: this is the final evaluation
            self.write_final(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._on_evaluation_start(trainer)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._keep(trainer, outputs, batch, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._on_evaluation_end(trainer, pl_module)

    # `test` evaluates exactly as `validate` does
    on_test_epoch_start = on_validation_epoch_start
    on_test_batch_end = on_validation_batch_end
    on_test_end = on_validation_end

    # ------------------------------------------------------------------------------------------------ fit end
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled and trainer.is_global_zero:
            self.write_final(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # an interrupted fit still leaves the pictures of its last validation
        if self.enabled and trainer.is_global_zero and trainer.state.fn == "fit":
            try:
                self.write_final(trainer, pl_module)
            except Exception as err:  # noqa: BLE001 - never hide the exception that stopped the fit
                log.warning("plots: could not write the final pictures after the fit stopped (%s)", err)

    def write_final(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[Path]:
        """Draw the kept validation batches, the curves, the confusion matrix and ``results.png``; returns them."""
        save_dir, names = self._dir(trainer), pl_module.names
        batches = self._record(self._write_batches(save_dir, names))
        self._log(trainer, "Validation", batches, tensorboard=False)
        results = self._record(self._write_metrics(save_dir, names) + self._write_results(save_dir))
        self._log(trainer, "Results", results, tensorboard=True)
        return batches + results

    def _write_batches(self, save_dir: Path, names: list[str] | None) -> list[Path]:
        from lightning_yolo.plots import plot_images

        written = []
        for i, kept in sorted(self._batches.items()):
            for suffix, targets in (("labels", kept.targets), ("pred", kept.predictions)):
                fname = save_dir / f"val_batch{i}_{suffix}.jpg"
                written.append(plot_images(kept.images, targets, kept.paths, names, fname, 1920, self.max_subplots))
        return written

    def _write_metrics(self, save_dir: Path, names: list[str] | None) -> list[Path]:
        from lightning_yolo.plots import plot_confusion_matrix, plot_mc_curve, plot_pr_curve

        written = []
        curves = self._curves
        if curves is not None:
            class_names = [names[c] if names and c < len(names) else str(c) for c in curves.unique_classes]
            written.append(plot_pr_curve(curves.px, curves.pr_curve, curves.ap, class_names, save_dir / "PR_curve.png"))
            for key, ylabel, y in (
                ("F1", "F1", curves.f1_curve),
                ("P", "Precision", curves.p_curve),
                ("R", "Recall", curves.r_curve),
            ):
                written.append(plot_mc_curve(curves.px, y, class_names, save_dir / CURVE_FILES[key], ylabel=ylabel))
        elif self._results is not None:
            log.info("plots: no true positive in the last validation, no PR / F1 / P / R curves")
        if self._results is not None and "confusion_matrix" in self._results:
            matrix = self._results["confusion_matrix"]
            written.append(plot_confusion_matrix(matrix, names, save_dir / "confusion_matrix.png"))
        return written

    @staticmethod
    def _write_results(save_dir: Path) -> list[Path]:
        from lightning_yolo.plots import plot_results

        csv_path = save_dir / "results.csv"
        return [plot_results(csv_path)] if csv_path.is_file() else []

    # ------------------------------------------------------------------------------------------------ loggers
    def _log(self, trainer: pl.Trainer, key: str, paths: list[Path], tensorboard: bool) -> None:
        """Send pictures to W&B (all groups) and TensorBoard (``tensorboard=True`` groups) loggers."""
        if not (self.log_images and paths):
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                # one key per picture ("Results/PR_curve"): W&B lays out a list of differently sized images badly
                pictures = {f"{key}/{p.stem}": wandb.Image(str(p), caption=p.name) for p in paths}
                logger.log_metrics(pictures, step=trainer.global_step)
            elif tensorboard and isinstance(logger, TensorBoardLogger):
                for path in paths:
                    image = cv2.imread(str(path))  # BGR
                    if image is not None:
                        rgb = image[..., ::-1].copy()
                        logger.experiment.add_image(path.stem, rgb, trainer.current_epoch, dataformats="HWC")
