"""Export formats: each writes a fused detection model to a file or folder that runs without lightning_yolo.

Every format writes the model's eval forward: input ``images`` float (bs, 3, H, W) RGB in [0, 1], output
``output0`` float (bs, N, 5 + nc) of decoded predictions (centre x, centre y, width, height in input pixels,
objectness, class probabilities), ready for NMS (ONNX ``--nms`` ends in NMS instead). Class names, stride, input
size and the other keys of :class:`~lightning_yolo.export.metadata.ExportMetadata` travel inside the file:

* ONNX: ``metadata_props``; read them with ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``.
* TorchScript: an extra file ``config.txt`` holding JSON (with ``shape``: the example input's shape); read it with
  ``files = {"config.txt": ""}; torch.jit.load(path, _extra_files=files)``.
* OpenVINO: ``metadata.yaml`` in the model folder; CoreML: the model's user-defined metadata; TensorRT: a JSON
  header before the engine (:mod:`lightning_yolo.export.to_tensorrt`).

:mod:`lightning_yolo.export.backends` loads any of them back for ``predict`` and ``validate``.

To add a format: write a ``write_<name>(job, path) -> Path`` function (in its own ``to_<name>.py`` when it needs
an optional package, imported inside the function) and add it to :data:`FORMATS` with the suffix of what it
writes; the ``export`` and ``benchmark`` commands offer every entry of ``FORMATS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_yolo.export.metadata import ExportMetadata

__all__ = ["FORMATS", "ExportFormat", "ExportJob", "output_path", "write_onnx", "write_torchscript"]


@dataclass(frozen=True)
class ExportJob:
    """What a format writes.

    Attributes:
        model: the model in eval mode, its BatchNorms fused (float16 when ``half``).
        example: (bs, 3, H, W) input to trace with, on the model's device and in its dtype; H, W are multiples
            of ``stride``.
        names: class names, index = class id.
        stride: the largest level stride in pixels.
        opset: ONNX opset version.
        dynamic: any batch size and input size (ONNX, OpenVINO).
        half: float16 weights and input (ONNX, TorchScript, TensorRT); OpenVINO: float16 weights in the IR.
        simplify: ONNX: slim the graph with onnxslim.
        nms: ONNX: end the graph in non-maximum suppression.
        int8: OpenVINO: INT8 post-training quantisation with NNCF, calibrated on ``data``'s images.
        data: dataset yaml whose images calibrate ``int8``.
        architecture: the model's architecture dict, stored with the metadata.
    """

    model: nn.Module
    example: torch.Tensor
    names: list[str]
    stride: int
    opset: int = 17
    dynamic: bool = False
    half: bool = False
    simplify: bool = False
    nms: bool = False
    int8: bool = False
    data: str | None = None
    architecture: dict[str, Any] | None = None

    def metadata(self) -> ExportMetadata:
        """What the written file carries (the example input's size and batch, the flags that shape the file)."""
        bs, _, h, w = self.example.shape
        return ExportMetadata(
            self.names, self.stride, [h, w], bs, self.dynamic, self.half, self.nms, architecture=self.architecture
        )


def write_onnx(job: ExportJob, path: Path) -> Path:
    """ONNX (:mod:`lightning_yolo.export.to_onnx`)."""
    from lightning_yolo.export.to_onnx import write_onnx as write

    return write(job, path)


def write_torchscript(job: ExportJob, path: Path) -> Path:
    """Trace the model and save it with ``config.txt`` (JSON metadata plus ``shape``) as an extra file."""
    traced = torch.jit.trace(job.model, job.example, strict=False)
    config: dict[str, Any] = {k: json.loads(v) for k, v in job.metadata().to_strings().items()}
    config["shape"] = list(job.example.shape)
    torch.jit.save(traced, str(path), _extra_files={"config.txt": json.dumps(config)})
    return path


def _lazy(module: str, function: str) -> Callable[[ExportJob, Path], Path]:
    """A writer that imports ``lightning_yolo.export.<module>`` only when called (its packages are optional)."""

    def write(job: ExportJob, path: Path) -> Path:
        import importlib

        return getattr(importlib.import_module(f"lightning_yolo.export.{module}"), function)(job, path)

    write.__name__ = function
    return write


@dataclass(frozen=True)
class ExportFormat:
    """A file format: the ending of what it writes (a suffix, or ``_name`` for a folder) and its writer."""

    suffix: str
    write: Callable[[ExportJob, Path], Path]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", write_onnx),
    "torchscript": ExportFormat(".torchscript", write_torchscript),
    "openvino": ExportFormat("_openvino_model", _lazy("to_openvino", "write_openvino")),
    "coreml": ExportFormat(".mlpackage", _lazy("to_coreml", "write_coreml")),
    "engine": ExportFormat(".engine", _lazy("to_tensorrt", "write_engine")),
    "saved_model": ExportFormat("_saved_model", _lazy("to_tensorflow", "write_saved_model")),
    "tflite": ExportFormat(".tflite", _lazy("to_tensorflow", "write_tflite")),
}
"""Format name (the ``--format`` choice) -> format."""


def output_path(weights: str | Path, format_name: str, int8: bool = False) -> Path:
    """The default output beside the weights: ``yolov5n.onnx``, ``yolov5n_openvino_model/`` (``_int8_`` with
    ``int8``)."""
    weights = Path(weights)
    suffix = FORMATS[format_name].suffix
    stem = weights.stem + ("_int8" if int8 else "")
    return weights.with_name(stem + suffix)
