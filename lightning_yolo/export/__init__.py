"""Weights in other files: ``export`` writes a model for other runtimes, ``convert`` writes lightning_yolo's weights
file.

- :mod:`lightning_yolo.export.run`: the ``export`` command (``python -m lightning_yolo export``);
- :mod:`lightning_yolo.export.formats`: one writer per file format (ONNX, TorchScript), registered in
  :data:`~lightning_yolo.export.formats.FORMATS`; a new format is a writer and an entry there;
- :mod:`lightning_yolo.export.convert`: the ``convert`` command (``python -m lightning_yolo convert``).

Both commands read weights through :mod:`lightning_yolo.models.weights`, so each takes an official YOLOv5 ``.pt``,
a converted weights file or a training ``.ckpt``.
"""

from lightning_yolo.export.formats import FORMATS, ExportFormat, ExportJob
from lightning_yolo.export.run import main

__all__ = ["FORMATS", "ExportFormat", "ExportJob", "main"]
