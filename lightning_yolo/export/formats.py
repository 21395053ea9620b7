"""Export formats: each writes a fused detection model to a file that runs without lightning_yolo.

Every format writes the model's eval forward: input ``images`` float (bs, 3, H, W) RGB in [0, 1], output
``output0`` float (bs, N, 5 + nc) of decoded predictions (centre x, centre y, width, height in input pixels,
objectness, class probabilities), ready for NMS. Class names, stride and input size travel inside the file:

* ONNX: ``metadata_props`` keys ``names`` (JSON list), ``stride`` (int), ``imgsz`` (JSON ``[H, W]``);
  read them with ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``.
* TorchScript: an extra file ``config.txt`` holding JSON ``{"names", "stride", "shape"}``; read it with
  ``files = {"config.txt": ""}; torch.jit.load(path, _extra_files=files)``.

To add a format: write a ``write_<name>(job, path) -> Path`` function here and add it to :data:`FORMATS` with the
suffix of the files it writes; the ``export`` command offers every entry of ``FORMATS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["FORMATS", "ExportFormat", "ExportJob", "write_onnx", "write_torchscript"]


@dataclass(frozen=True)
class ExportJob:
    """What a format writes.

    Attributes:
        model: the model in eval mode, its BatchNorms fused.
        example: (bs, 3, H, W) input to trace with, on the model's device and in its dtype; H, W are multiples
            of ``stride``.
        names: class names, index = class id.
        stride: the largest level stride in pixels.
        opset: ONNX opset version.
        dynamic: ONNX: dynamic batch, height and width.
    """

    model: nn.Module
    example: torch.Tensor
    names: list[str]
    stride: int
    opset: int = 17
    dynamic: bool = False


def write_onnx(job: ExportJob, path: Path) -> Path:
    """Export with PyTorch's TorchScript-based ONNX exporter (works offline), then add the metadata and check it."""
    import onnx  # optional dependency, needed only here

    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
    torch.onnx.export(
        job.model,
        (job.example,),
        str(path),
        opset_version=job.opset,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes=axes if job.dynamic else None,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    metadata = {
        "names": json.dumps(job.names),
        "stride": str(job.stride),
        "imgsz": json.dumps(list(job.example.shape[2:])),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def write_torchscript(job: ExportJob, path: Path) -> Path:
    """Trace the model and save it with ``config.txt`` (JSON names, stride and input shape) as an extra file."""
    traced = torch.jit.trace(job.model, job.example, strict=False)
    config = {"names": job.names, "stride": job.stride, "shape": list(job.example.shape)}
    torch.jit.save(traced, str(path), _extra_files={"config.txt": json.dumps(config)})
    return path


@dataclass(frozen=True)
class ExportFormat:
    """A file format: the suffix of the files it writes and its writer."""

    suffix: str
    write: Callable[[ExportJob, Path], Path]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", write_onnx),
    "torchscript": ExportFormat(".torchscript", write_torchscript),
}
"""Format name (the ``--format`` choice) -> format."""
