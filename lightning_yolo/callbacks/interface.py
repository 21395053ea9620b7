"""What the callbacks read from the LightningModule and the data module: declared here, implemented by
:class:`~lightning_yolo.module.YOLOModule` and :class:`~lightning_yolo.data.datamodule.YOLODataModule`.

A callback types its ``pl_module`` / dataset against these protocols and reads the attributes directly; a module
that lacks one fails loudly instead of a callback silently doing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from lightning_yolo.evaluation.ap import APResult


class DetectorModule(Protocol):
    """The detector a callback observes."""

    hparams: Mapping[str, Any]
    """Its settings (``imgsz``, ``anchor_t``, ...)."""
    last_results: dict[str, torch.Tensor] | None
    """Metrics of the latest validation or test (``DetectionMetric.compute``); None before the first."""

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


class LabelledDataset(Protocol):
    """A training dataset whose labels AutoAnchor and the label plots read."""

    labels: Sequence[np.ndarray]
    """Per image ``(n, 5)`` ``[cls, x, y, w, h]`` normalised to the image."""
    shapes_wh: np.ndarray
    """``(N, 2)`` original ``[width, height]`` of each image."""


class DataModuleWithSplits(Protocol):
    """A data module holding its built datasets by split name (``train``, ``val``, ``test``)."""

    datasets: Mapping[str, LabelledDataset]
