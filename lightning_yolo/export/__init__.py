"""Weights in other files: ``export`` writes a model for other runtimes, ``convert`` writes lightning_yolo's weights
file.

- :mod:`lightning_yolo.export.run`: the ``export`` command (``python -m lightning_yolo export``);
- :mod:`lightning_yolo.export.formats`: the format table :data:`~lightning_yolo.export.formats.FORMATS` (ONNX,
  TorchScript, OpenVINO, CoreML, TensorRT, TensorFlow SavedModel and TFLite); the writers needing an optional
  package live in ``to_<format>.py`` (``to_onnx``, ``onnx_nms``, ``to_openvino``, ``to_coreml``, ``to_tensorrt``,
  ``to_tensorflow``), what every file carries in :mod:`~lightning_yolo.export.metadata`, and the install line of
  a missing package in :mod:`~lightning_yolo.export.extras`;
- :mod:`lightning_yolo.export.backends` (with :mod:`~lightning_yolo.export.runtimes`): load any exported file for
  ``predict`` and ``validate``, called like the PyTorch model;
- :mod:`lightning_yolo.export.benchmark`: the ``benchmark`` command (YOLOv5's benchmark table);
- :mod:`lightning_yolo.export.convert`: the ``convert`` command (``python -m lightning_yolo convert``).

Both commands read weights through :mod:`lightning_yolo.models.weights`, so each takes an official YOLOv5 ``.pt``,
a converted weights file or a training ``.ckpt``.
"""

from lightning_yolo.export.formats import FORMATS, ExportFormat, ExportJob
from lightning_yolo.export.run import main

__all__ = ["FORMATS", "ExportFormat", "ExportJob", "main"]
