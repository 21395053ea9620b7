"""lightning_yolo: YOLOv5 object-detector training on PyTorch Lightning.

The Python API, imported on first use (``import lightning_yolo`` itself imports nothing heavy):

- ``lightning_yolo.load_model(path, nc=None)``: any weights file (official ``.pt``, converted file, training
  ``.ckpt``) as a ready ``DetectionModel`` holding its architecture, weights and class names.
- ``lightning_yolo.YOLOModule.from_weights(path, **settings)``: the same as a LightningModule for
  ``Trainer.fit`` / ``validate`` / ``test``.
- ``lightning_yolo.YOLODataModule``: a YOLO-format dataset yaml as a LightningDataModule.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": ("lightning_yolo.models.weights", "build_model_from_weights"),
    "load_weights": ("lightning_yolo.models.weights", "load_weights"),
    "YOLOModule": ("lightning_yolo.module", "YOLOModule"),
    "YOLODataModule": ("lightning_yolo.data.datamodule", "YOLODataModule"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lightning_yolo' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
