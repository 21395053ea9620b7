"""YOLOv5 val.py's output options (``--val.save_json``, ``--val.save_txt``, ``--val.save_conf``,
``--val.save_hybrid``) for ``validate``, ``test`` and the validations of a ``fit``.

- ``save_txt``: each image's detections as a YOLO label file ``<run>/labels/<stem>.txt`` (``cls x y w h``
  normalised to the original image; ``save_conf`` appends the confidence). Images without detections get no file.
- ``save_json``: every detection as a COCO result (:mod:`lightning_yolo.evaluation.coco`) in
  ``<run>/<weights stem>_predictions.json`` (``predictions.json`` in a fit), then the COCO evaluation against the
  dataset's annotation file when it has one, else against its labels converted to ``<run>/ground_truth_coco.json``;
  ``metrics/coco_mAP_0.5:0.95`` and ``metrics/coco_mAP_0.5`` are logged and the COCO summary is printed after
  val.py's table. Without faster-coco-eval or pycocotools the JSON is written and one line says what to install.
- ``save_hybrid``: validate / test add the labels to the predictions before NMS (YOLOv5's auto-labelling aid), so
  the label files hold labels + predictions; it implies ``save_txt``. The switch lives here, with the output it is
  for, and reaches the module through :attr:`DetectorModule.hybrid_labels` for the evaluation only: it is never a
  model setting, so no checkpoint or config carries it, and a fit ignores it (its fitness would pick ``best.ckpt``
  from the labels).

Each rank keeps the detections of its own images (as the step returns them in original-image pixels); at the
epoch end they are gathered and global rank 0 writes the files, evaluates and logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lightning_yolo.callbacks.interface import DetectorModule, EvaluatedDataset, EvaluationDataModule
from lightning_yolo.errors import ConfigError
from lightning_yolo.evaluation.coco import (
    INSTALL_HINT,
    CocoResult,
    GroundTruth,
    coco_backend,
    coco_image_id,
    detections_to_coco,
    evaluate_coco,
    find_annotations,
    resolve_ground_truth,
    write_json,
)
from lightning_yolo.evaluation.label_files import write_label_file

log = logging.getLogger("lightning_yolo")

__all__ = ["COCO_METRICS", "ValOutputs"]

COCO_METRICS = ("metrics/coco_mAP_0.5:0.95", "metrics/coco_mAP_0.5")
"""The logged COCO results."""

Kept = tuple[np.ndarray, tuple[int, int]]
"""One image's ``(n, 6)`` detections in original pixels and its original ``(height, width)``."""


class ValOutputs(Callback):
    """Write YOLOv5 val.py's label files and COCO JSON, and evaluate the JSON with the COCO API.

    Args:
        save_json: Write the detections as COCO JSON and evaluate them with faster-coco-eval or pycocotools
            (``pip install -e '.[coco]'``), logging ``metrics/coco_mAP_0.5:0.95`` and ``metrics/coco_mAP_0.5``.
        save_txt: Write each image's detections to ``<run>/labels/<stem>.txt`` as YOLO labels.
        save_conf: Append the confidence to each ``save_txt`` row.
        save_hybrid: validate / test: add the labels to the predictions before NMS, so label files hold labels +
            predictions (implies ``save_txt``); the metrics then measure the labels too, not the model alone.
        coco_annotations: COCO annotation file for ``save_json`` (default: ``annotations/instances_<split>.json``
            under the dataset root when it exists, else the dataset's labels converted to COCO).
    """

    def __init__(
        self,
        save_json: bool = False,
        save_txt: bool = False,
        save_conf: bool = False,
        save_hybrid: bool = False,
        coco_annotations: str | None = None,
    ) -> None:
        if coco_annotations is not None and not Path(coco_annotations).is_file():
            raise ConfigError(f"val.coco_annotations: {coco_annotations} is not a file")
        self.save_json, self.save_conf, self.save_hybrid = save_json, save_conf, save_hybrid
        self.save_txt = save_txt or save_hybrid  # as YOLOv5's val.py: --save-hybrid implies --save-txt
        self.coco_annotations = Path(coco_annotations) if coco_annotations is not None else None
        if save_conf and not self.save_txt:
            log.warning("val.save_conf adds confidences to the --val.save_txt label files; alone it does nothing")
        self._kept: dict[str, Kept] = {}
        self._ground_truth: dict[str, GroundTruth] = {}  # by split: built once, the labels do not change
        self._written: set[Path] = set()
        self._report: list[str] = []
        self.result: CocoResult | None = None
        """The latest COCO evaluation; None before one ran."""
        self.json_path: Path | None = None
        """The latest predictions JSON written."""

    @property
    def active(self) -> bool:
        """Whether any output is asked for."""
        return self.save_json or self.save_txt

    # ------------------------------------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.save_hybrid and stage == "fit":
            log.warning("val.save_hybrid is for validate and test: the validations of this fit use predictions only")
        elif self.save_hybrid:
            log.warning("val.save_hybrid: the metrics come from labels + predictions, not from predictions alone")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self._keep(trainer, outputs, batch)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self._keep(trainer, outputs, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end(trainer, pl_module)

    # ------------------------------------------------------------------------------------------------ evaluation
    def _start(self, trainer: pl.Trainer, pl_module: DetectorModule) -> None:
        self._kept, self._report = {}, []
        pl_module.hybrid_labels = self.save_hybrid and trainer.state.fn != "fit" and not trainer.sanity_checking

    def _keep(self, trainer: pl.Trainer, outputs: Any, batch: Any) -> None:
        if not self.active or trainer.sanity_checking:
            return
        if not isinstance(outputs, Mapping) or "predictions" not in outputs:
            raise TypeError("ValOutputs needs the evaluation step's 'predictions' (callbacks/interface.py)")
        for path, det, shapes in zip(batch["paths"], outputs["predictions"], batch["shapes"], strict=True):
            self._kept[str(path)] = (det.detach().float().cpu().numpy(), (int(shapes[0][0]), int(shapes[0][1])))

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active or trainer.sanity_checking:
            return
        kept = _gather(trainer, self._kept)
        if not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        if self.save_txt:
            self._report.append(self._write_labels(run_dir / "labels", kept))
        if self.save_json:
            self._save_json(trainer, pl_module, run_dir, kept)

    def _end(self, trainer: pl.Trainer, pl_module: DetectorModule) -> None:
        pl_module.hybrid_labels = False
        if self._report and trainer.is_global_zero and not trainer.sanity_checking:
            print("\n".join(self._report))  # after the module's table and speed line, as val.py prints them
        self._report = []

    # ------------------------------------------------------------------------------------------------ outputs
    def _write_labels(self, folder: Path, kept: Mapping[str, Kept]) -> str:
        """Label files of the images with detections; files of an earlier validation that has none are removed."""
        folder.mkdir(parents=True, exist_ok=True)
        written = {
            write_label_file(folder / f"{Path(path).stem}.txt", torch.from_numpy(det), shape, self.save_conf)
            for path, (det, shape) in kept.items()
            if len(det)
        }
        for stale in self._written - written:
            stale.unlink(missing_ok=True)
        self._written = written
        return f"{len(written)} labels saved to {folder}"

    def _save_json(self, trainer: pl.Trainer, pl_module: pl.LightningModule, run_dir: Path, kept: dict) -> None:
        dataset, split = _evaluated_dataset(trainer)
        gt = self._ground_truth_for(trainer, dataset, split, run_dir, list(pl_module.names))
        ids = dict(zip(dataset.image_files, gt.image_ids, strict=True)) if gt is not None else {}
        category_ids = gt.category_ids if gt is not None else list(range(len(pl_module.names)))
        order = {path: i for i, path in enumerate(dataset.image_files)} if dataset is not None else {}
        paths = sorted(kept, key=lambda p: (order.get(p, len(order)), p))  # dataset order, whatever the ranks
        image_ids = [ids.get(p, coco_image_id(p)) for p in paths]
        records = [
            r
            for p, i in zip(paths, image_ids, strict=True)
            for r in detections_to_coco(torch.from_numpy(kept[p][0]), i, category_ids)
        ]
        self.json_path = write_json(run_dir / f"{_weights_stem(trainer, pl_module)}predictions.json", records)
        self._report.append(f"COCO predictions saved to {self.json_path}")
        if gt is None:
            self._report.append("COCO evaluation skipped: the data module holds no labelled dataset to compare with")
        elif (backend := coco_backend()) is None:
            self._report.append(INSTALL_HINT)
        else:
            self._evaluate(trainer, pl_module, gt, records, image_ids, backend)

    def _ground_truth_for(
        self, trainer: pl.Trainer, dataset: EvaluatedDataset | None, split: str, run_dir: Path, names: list[str]
    ) -> GroundTruth | None:
        """The split's COCO ground truth (built once); a converted one is written to the run folder."""
        if dataset is None:
            return None
        if split not in self._ground_truth:
            annotations = self.coco_annotations or _default_annotations(trainer.datamodule, split)
            gt = resolve_ground_truth(dataset.image_files, dataset.shapes_wh, dataset.labels, names, annotations)
            self._ground_truth[split] = gt
        gt = self._ground_truth[split]
        if gt.is_converted:
            target = run_dir / "ground_truth_coco.json"
            if not target.is_file():
                write_json(target, gt.data)
        return gt

    def _evaluate(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        gt: GroundTruth,
        records: list[dict],
        image_ids: list,
        backend: str,
    ) -> None:
        against = gt.source or Path(trainer.default_root_dir) / "ground_truth_coco.json"
        try:
            result = evaluate_coco(gt.data, records, image_ids, backend)
        except Exception as err:  # noqa: BLE001 - as YOLOv5: a failed COCO evaluation does not fail the run
            self._report.append(f"COCO evaluation with {backend} failed: {type(err).__name__}: {err}")
            return
        self.result = result
        for name, value in zip(COCO_METRICS, (result.map, result.map50), strict=True):
            pl_module.log(name, value, rank_zero_only=True)
        line = f"COCO mAP@0.5:0.95 {result.map:.3f}, mAP@0.5 {result.map50:.3f} ({backend}, against {against})"
        if trainer.state.fn != "fit":
            self._report += [f"COCO evaluation ({backend}) against {against}:", result.summary]
        self._report.append(line)


def _gather(trainer: pl.Trainer, kept: dict[str, Kept]) -> dict[str, Kept]:
    """Every rank's kept detections, merged (each image is evaluated by one rank only)."""
    if trainer.world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return kept
    parts: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, kept)
    return {path: value for part in parts for path, value in part.items()}


def _evaluated_dataset(trainer: pl.Trainer) -> tuple[EvaluatedDataset | None, str]:
    """The dataset being evaluated and its split name; None when the data module does not hold it."""
    datamodule: EvaluationDataModule | None = getattr(trainer, "datamodule", None)
    split = getattr(datamodule, "test_split", "test") if trainer.testing else "val"
    dataset = getattr(datamodule, "datasets", {}).get(split)
    return (dataset if hasattr(dataset, "image_files") else None), split


def _default_annotations(datamodule: EvaluationDataModule, split: str) -> Path | None:
    """``<root>/annotations/instances_<split source>.json`` when the dataset has one (COCO's layout)."""
    config = getattr(datamodule, "config", None)
    if config is None or split not in config.splits:
        return None
    return find_annotations(config.root, config.splits[split])


def _weights_stem(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """``<stem>_`` of the evaluated weights file (``--ckpt_path``, else ``--model.weights``); empty in a fit."""
    if trainer.state.fn == "fit":
        return ""
    source = trainer.ckpt_path or pl_module.hparams.get("weights")
    return f"{Path(source).stem}_" if source else ""
