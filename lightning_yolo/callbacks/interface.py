"""What the callbacks read from the LightningModule and the data module: declared here, implemented by
:class:`~lightning_yolo.module.YOLOModule` and :class:`~lightning_yolo.data.datamodule.YOLODataModule`.

A callback types its ``pl_module`` / dataset against these protocols and reads the attributes directly; a module
that lacks one fails loudly instead of a callback silently doing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict

import numpy as np
import torch

from lightning_yolo.evaluation.ap import APResult


class DetectorModule(Protocol):
    """The detector a callback observes."""

    hparams: Mapping[str, Any]
    """Its settings (``imgsz``, ``anchor_t``, ...)."""
    last_results: dict[str, torch.Tensor] | None
    """Metrics of the latest validation or test (``DetectionMetric.compute``); None before the first."""
    hybrid_labels: bool
    """Add the labels to the predictions before NMS (YOLOv5's ``--save-hybrid``); set by a callback."""

    @property
    def names(self) -> list[str]:
        """Class names, index = class id."""

    @property
    def last_curves(self) -> APResult | None:
        """P, R, F1 and PR curves of the latest validation; None when nothing was a true positive."""

    @property
    def anchor_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The Detect head's anchors ``(nl, na, 2)`` in grid units and strides ``(nl,)``."""

    def set_anchors(self, anchors: torch.Tensor) -> None:
        """Adopt new anchors ``(nl, na, 2)`` in grid units everywhere they are held."""


class EvaluationOutput(TypedDict):
    """What the detector's ``validation_step`` / ``test_step`` return (callbacks receive it as ``outputs``): per
    image of the batch, ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` detections after NMS."""

    detections: list[torch.Tensor]
    """In the pixels of the (letterboxed) batch image."""
    predictions: list[torch.Tensor]
    """In the pixels of the original image."""


class LabelledDataset(Protocol):
    """A training dataset whose labels AutoAnchor and the label plots read."""

    labels: Sequence[np.ndarray]
    """Per image ``(n, 5)`` ``[cls, x, y, w, h]`` normalised to the image."""
    shapes_wh: np.ndarray
    """``(N, 2)`` original ``[width, height]`` of each image."""


class DataModuleWithSplits(Protocol):
    """A data module holding its built datasets by split name (``train``, ``val``, ``test``)."""

    datasets: Mapping[str, LabelledDataset]


class EvaluatedDataset(LabelledDataset, Protocol):
    """A validation / test dataset whose images a callback names (label files, COCO image ids)."""

    image_files: Sequence[str]
    """Image paths in dataset order (a batch's ``paths`` are taken from it)."""


class DatasetSource(Protocol):
    """Where a dataset lives: its root folder and the sources (folders or list files) of each split."""

    root: Path
    splits: Mapping[str, Sequence[Path]]


class EvaluationDataModule(Protocol):
    """A data module as the evaluation outputs read it."""

    datasets: Mapping[str, EvaluatedDataset]
    """Built datasets by split name."""
    config: DatasetSource
    """The dataset yaml's root and split sources."""
    test_split: str
    """The split ``test`` evaluates (``test``, else ``val``)."""
