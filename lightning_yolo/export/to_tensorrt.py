"""TensorRT engine, built from the ONNX graph on the CUDA device it will run on.

The file is a header, then the serialized engine: 4 bytes little-endian length ``n``, ``n`` bytes of JSON metadata
(:class:`~lightning_yolo.export.metadata.ExportMetadata` keys), the engine. An engine runs only on the GPU model
and TensorRT version it was built with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_yolo.export.extras import require
from lightning_yolo.export.metadata import ExportMetadata, metadata_from_strings

if TYPE_CHECKING:
    from lightning_yolo.export.formats import ExportJob

__all__ = ["read_engine_file", "write_engine"]

WORKSPACE_BYTES = 4 << 30
"""Most scratch memory TensorRT may use while building (4 GiB)."""


def _build(onnx_file: Path, job: ExportJob) -> bytes:
    trt = require("tensorrt", "--format engine")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_file.read_bytes()):
        raise ValueError(f"TensorRT cannot parse the ONNX graph: {parser.get_error(0)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if job.half:
        config.set_flag(trt.BuilderFlag.FP16)
    if job.dynamic:
        profile = builder.create_optimization_profile()
        shape = tuple(job.example.shape)
        smallest = (1, 3, job.stride, job.stride)
        largest = (max(shape[0], 1) * 2, 3, shape[2] * 2, shape[3] * 2)
        profile.set_shape("images", smallest, shape, largest)
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ValueError("TensorRT failed to build the engine")
    return bytes(engine)


def write_engine(job: ExportJob, path: Path) -> Path:
    """Export float32 ONNX beside ``path``, build the engine (float16 with ``job.half``), write header + engine."""
    from lightning_yolo.export.to_onnx import write_onnx

    if job.example.device.type != "cuda":
        raise ValueError("--format engine needs a CUDA device (--device 0): TensorRT builds an engine on its GPU")
    onnx_file = path.with_suffix(".engine.onnx")
    float_job = dataclasses.replace(job, model=job.model.float(), example=job.example.float(), nms=False)
    try:
        write_onnx(float_job, onnx_file)
        blob = _build(onnx_file, job)
    finally:
        onnx_file.unlink(missing_ok=True)
    header = json.dumps(job.metadata().to_strings()).encode()
    path.write_bytes(len(header).to_bytes(4, "little") + header + blob)
    return path


def read_engine_file(path: Path) -> tuple[ExportMetadata, bytes]:
    """Split an engine file into its metadata and the serialized engine.

    Raises:
        ValueError: the header is missing or not JSON metadata.
    """
    data = path.read_bytes()
    size = int.from_bytes(data[:4], "little")
    try:
        values = json.loads(data[4 : 4 + size].decode())
    except (UnicodeDecodeError, ValueError):
        raise ValueError("no lightning_yolo metadata header (an engine written by another tool?)") from None
    if not isinstance(values, dict):
        raise ValueError("no lightning_yolo metadata header")
    return metadata_from_strings(values, str(path)), data[4 + size :]
