"""Weights & Biases beyond the scalars: validation boxes, a per-class AP table, the full config, resumable runs.

Lightning's ``WandbLogger`` logs every scalar and, with ``log_model``, the best and last checkpoints as artifacts;
:class:`~lightning_yolo.callbacks.plots.RunPlots` sends the run pictures. :class:`WandbLogging` adds:

- validation images with predicted and labelled boxes (W&B box overlays with class names), after each validation;
- a per-class table (images, instances, P, R, mAP@0.5, mAP@0.5:0.95), after each validation;
- the run's ``config.yaml`` (the full CLI config) in the W&B run config under ``config``;
- the W&B run id in every checkpoint, so that a resumed fit can continue the same W&B run.

A logger creates its W&B run before any callback state is restored from a checkpoint, so the id has to reach the
logger before the Trainer starts: :func:`configure_loggers_for_run` (called by the CLI) reads it with
:func:`wandb_run_id_from_checkpoint` and sets the logger's ``id``. Without the CLI, pass
``WandbLogger(id=wandb_run_id_from_checkpoint(ckpt))`` yourself. Works offline (``WANDB_MODE=offline``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger

from lightning_yolo.evaluation.table import results_rows
from lightning_yolo.ops.boxes import xywhn_to_xyxy

log = logging.getLogger(__name__)

__all__ = ["WandbLogging", "configure_loggers_for_run", "wandb_run_id_from_checkpoint"]

RUN_ID_KEY = "wandb_run_id"
"""Key of the W&B run id in the callback's checkpoint state."""

_RUN_FOLDER_LOGGERS = ("WandbLogger", "TensorBoardLogger", "CSVLogger")
_TABLE_COLUMNS = ["class", "images", "instances", "P", "R", "mAP50", "mAP50-95"]


# ---------------------------------------------------------------------------------------------------- run id
def wandb_run_id_from_checkpoint(path: str | Path) -> str | None:
    """The W&B run id a checkpoint was logged to (stored by :class:`WandbLogging`), or None."""
    try:  # memory-mapped: only the small callback state is actually read
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files not in the zip format cannot be mapped
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    states = checkpoint.get("callbacks") if isinstance(checkpoint, dict) else None
    for state in (states or {}).values():
        run_id = state.get(RUN_ID_KEY) if isinstance(state, Mapping) else None
        if isinstance(run_id, str) and run_id:
            return run_id
    return None


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _set(obj: Any, key: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[key] = value
    else:
        setattr(obj, key, value)


def _logger_entries(logger_config: Any) -> list[Any]:
    """The ``{class_path, init_args}`` entries of a ``trainer.logger`` config value (bool, entry or list)."""
    entries = logger_config if isinstance(logger_config, list) else [logger_config]
    return [e for e in entries if e is not None and not isinstance(e, bool) and _get(e, "class_path")]


def configure_loggers_for_run(logger_config: Any, run_dir: str | Path, ckpt_path: str | Path | None = None) -> None:
    """Point the configured loggers at the run folder and, when resuming, at the checkpoint's W&B run.

    Edits the parsed ``trainer.logger`` value in place (a ``{class_path, init_args}`` namespace or dict, a list of
    them, or a bool, which is left alone):

    - W&B, TensorBoard and CSV loggers whose ``save_dir`` is ``"."`` or unset write into ``run_dir`` (so the
      CLI's ``config.yaml``, which Lightning saves to the first logger's folder, stays in the run folder too);
    - a W&B logger without a run ``name`` is named after the run folder (``exp``, ``exp2`` ...);
    - with ``ckpt_path``, a W&B logger without ``id`` / ``version`` continues the run the checkpoint names.
    """
    run_id = None
    for entry in _logger_entries(logger_config):
        kind = str(_get(entry, "class_path")).rsplit(".", 1)[-1]
        if kind not in _RUN_FOLDER_LOGGERS:
            continue
        if _get(entry, "init_args") is None:
            _set(entry, "init_args", {})
        args = _get(entry, "init_args")
        if _get(args, "save_dir") in (None, "", "."):
            _set(args, "save_dir", str(run_dir))
        if kind != "WandbLogger":
            continue
        if _get(args, "name") is None:
            _set(args, "name", Path(run_dir).name)
        if ckpt_path is not None and _get(args, "id") is None and _get(args, "version") is None:
            run_id = run_id or wandb_run_id_from_checkpoint(ckpt_path)
            if run_id is not None:
                _set(args, "id", run_id)
                _set(args, "resume", _get(args, "resume") or "allow")
                log.info("W&B: continuing run %s from %s", run_id, ckpt_path)


# ---------------------------------------------------------------------------------------------------- boxes
def _box_group(boxes_xyxy: np.ndarray, classes: np.ndarray, names: dict[int, str], conf: np.ndarray | None) -> dict:
    """A W&B box group: pixel-domain boxes with class ids and captions (and confidence scores)."""
    data = []
    for i, (box, cls) in enumerate(zip(boxes_xyxy.tolist(), classes.astype(int).tolist(), strict=True)):
        entry = {
            "position": {"minX": box[0], "minY": box[1], "maxX": box[2], "maxY": box[3]},
            "domain": "pixel",
            "class_id": cls,
            "box_caption": names.get(cls, str(cls)),
        }
        if conf is not None:
            entry["box_caption"] += f" {conf[i]:.2f}"
            entry["scores"] = {"conf": float(conf[i])}
        data.append(entry)
    return {"box_data": data, "class_labels": names}


def wandb_boxes(
    detections: torch.Tensor, labels_xywhn: torch.Tensor, shape: tuple[int, int], names: dict[int, str], conf: float
) -> dict[str, dict]:
    """W&B ``boxes`` of one image: ``predictions`` above ``conf`` and ``ground_truth``.

    Args:
        detections: ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` in pixels of the image.
        labels_xywhn: ``(m, 5)`` ``[cls, x, y, w, h]`` normalised to the image.
        shape: ``(height, width)`` of the image.
        names: class names by id.
        conf: lowest confidence shown.
    """
    det = detections.detach().float().cpu().numpy().reshape(-1, 6)
    det = det[det[:, 4] >= conf]
    lab = labels_xywhn.detach().float().cpu().numpy().reshape(-1, 5)
    h, w = shape
    truth = xywhn_to_xyxy(lab[:, 1:5], w=w, h=h) if len(lab) else np.zeros((0, 4))
    return {
        "predictions": _box_group(det[:, :4], det[:, 5], names, det[:, 4]),
        "ground_truth": _box_group(np.asarray(truth), lab[:, 0], names, None),
    }


# ---------------------------------------------------------------------------------------------------- callback
class WandbLogging(Callback):
    """Validation boxes, a per-class AP table, the full config and the run id for a ``WandbLogger`` run.

    Does nothing unless one of the Trainer's loggers is a ``WandbLogger``; logs from global rank 0 only.

    Args:
        max_images: Validation images logged with boxes after each validation (the first ones of rank 0).
        box_conf: Lowest confidence of the predicted boxes shown.
        class_table: Log the per-class table after each validation.
        log_config: Add the run folder's ``config.yaml`` to the W&B run config.
    """

    def __init__(
        self, max_images: int = 16, box_conf: float = 0.25, class_table: bool = True, log_config: bool = True
    ) -> None:
        self.max_images, self.box_conf = max_images, box_conf
        self.class_table, self.log_config = class_table, log_config
        self.stored_run_id: str | None = None
        self.fit_trainer: pl.Trainer | None = None
        """The run id found in the checkpoint a fit resumed from."""
        self._images: list[tuple[np.ndarray, dict, str]] = []
        self._config_logged = False

    @staticmethod
    def wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
        """The Trainer's first W&B logger, if any."""
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def _active(self, trainer: pl.Trainer) -> WandbLogger | None:
        logger = self.wandb_logger(trainer)
        return logger if logger is not None and trainer.is_global_zero and not trainer.sanity_checking else None

    # ------------------------------------------------------------------------------------------------ config
    def _log_config(self, trainer: pl.Trainer) -> None:
        logger = self._active(trainer)
        if logger is None or not self.log_config or self._config_logged:
            return
        folders = [logger.save_dir, trainer.default_root_dir]
        path = next((Path(f) / "config.yaml" for f in folders if f and (Path(f) / "config.yaml").is_file()), None)
        if path is None:
            return
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        logger.experiment.config.update({"config": config}, allow_val_change=True)
        self._config_logged = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_config(trainer)
        logger = self._active(trainer)
        if logger is not None and self.stored_run_id is not None and logger.version != self.stored_run_id:
            log.warning(
                "W&B: this fit logs to run %s but its checkpoint was logged to run %s; pass "
                "--trainer.logger.init_args.id %s to continue that run",
                logger.version,
                self.stored_run_id,
                self.stored_run_id,
            )

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_config(trainer)
        self._images = []

    # ------------------------------------------------------------------------------------------------ images
    def _collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any) -> None:
        room = self.max_images - len(self._images)
        if room <= 0 or self._active(trainer) is None or not isinstance(outputs, dict):
            return
        names = dict(enumerate(pl_module.names))
        images, targets = batch["img"], batch["targets"]
        shape = tuple(images.shape[2:])
        for i, det in enumerate(outputs.get("detections", [])[:room]):
            boxes = wandb_boxes(det, targets[targets[:, 0] == i][:, 1:6], shape, names, self.box_conf)
            image = images[i].detach().cpu().permute(1, 2, 0).numpy()  # (H, W, 3) RGB uint8
            self._images.append((image, boxes, Path(batch["paths"][i]).name))

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(trainer, pl_module, outputs, batch)

    on_test_start = on_validation_start  # test collects its pictures as validation does
    on_test_batch_end = on_validation_batch_end

    def _log_evaluation(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str) -> None:
        logger = self._active(trainer)
        if logger is None:
            return
        step = trainer.global_step
        if self._images:
            images, boxes, captions = (list(x) for x in zip(*self._images, strict=True))
            logger.log_image(f"{prefix}/predictions", images, step=step, boxes=boxes, caption=captions)
            self._images = []
        results = pl_module.last_results
        if self.class_table and results:
            rows = results_rows(results, pl_module.names)
            logger.log_table(f"{prefix}/classes", columns=_TABLE_COLUMNS, data=rows, step=step)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_evaluation(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_evaluation(trainer, pl_module, "test")

    # ------------------------------------------------------------------------------------------------ run id
    def state_dict(self) -> dict[str, Any]:
        trainer = self.fit_trainer
        logger = self.wandb_logger(trainer) if trainer is not None else None
        run_id = logger.version if logger is not None else self.stored_run_id
        return {RUN_ID_KEY: run_id} if run_id else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stored_run_id = state_dict.get(RUN_ID_KEY)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.fit_trainer = trainer  # state_dict() takes no trainer; it needs the logger's run id
