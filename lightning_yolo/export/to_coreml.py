"""CoreML: an ML Program (``.mlpackage``) converted with coremltools from ``torch.export``'s program (the
TorchScript trace turns the head's shape arithmetic into ``int`` ops that coremltools cannot convert).

Input ``images`` float (bs, 3, H, W) RGB in [0, 1], output ``output0`` (bs, N, 5 + nc) as the other formats; the
metadata keys are the model's user-defined metadata. coremltools converts on Linux, but predicts only on macOS:
here the written package is checked structurally (:func:`check_package`: its spec's input, output and metadata).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lightning_yolo.export.extras import require
from lightning_yolo.export.metadata import ExportMetadata, metadata_from_strings

if TYPE_CHECKING:
    from lightning_yolo.export.formats import ExportJob

__all__ = ["check_package", "read_metadata", "write_coreml"]


def write_coreml(job: ExportJob, path: Path) -> Path:
    """Export in float32, convert (float16 compute with ``job.half``), add the metadata, save and check."""
    ct = require("coremltools", "--format coreml")
    job = dataclasses.replace(job, model=job.model.float(), example=job.example.float())
    program = torch.export.export(job.model, (job.example,)).run_decompositions({})
    shape = tuple(job.example.shape)
    precision = ct.precision.FLOAT16 if job.half else ct.precision.FLOAT32
    try:
        model = ct.convert(
            program,
            inputs=[ct.TensorType(name="images", shape=shape)],
            outputs=[ct.TensorType(name="output0")],
            convert_to="mlprogram",
            compute_precision=precision,
        )
    except Exception as exc:  # coremltools raises bare exceptions for unsupported operators
        raise ValueError(f"coremltools could not convert the model: {str(exc).splitlines()[0]}") from None
    model.user_defined_metadata.update(job.metadata().to_strings())
    model.short_description = f"lightning_yolo detector, {len(job.names)} classes, input {list(shape)}"
    model.save(str(path))
    check_package(path)
    return path


def read_metadata(spec: Any, source: str) -> tuple[ExportMetadata, list[int]]:
    """The metadata and the input shape of a CoreML spec.

    Raises:
        ValueError: the spec lacks the ``images`` input, the ``output0`` output or the metadata.
    """
    inputs = {i.name: i for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    if "images" not in inputs or outputs != ["output0"]:
        raise ValueError(f"{source}: expected input 'images' and output 'output0', found {list(inputs)} -> {outputs}")
    meta = metadata_from_strings(dict(spec.description.metadata.userDefined), source)
    shape = [int(d) for d in inputs["images"].type.multiArrayType.shape]
    return meta, shape


def check_package(path: Path) -> tuple[ExportMetadata, list[int]]:
    """Load a written ``.mlpackage`` without compiling it (possible on any platform) and check its structure.

    Returns:
        The metadata and the input shape ``[bs, 3, H, W]``.

    Raises:
        ValueError: the package cannot be read or lacks the input, output or metadata.
    """
    ct = require("coremltools", "--format coreml")
    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:  # coremltools raises bare exceptions for unreadable packages
        raise ValueError(f"{path}: not a CoreML package ({str(exc).splitlines()[0]})") from None
    return read_metadata(spec, str(path))
