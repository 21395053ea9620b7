"""OpenVINO IR: ``openvino.convert_model`` on the ONNX graph, optionally INT8-quantised with NNCF.

Writes a folder ``<stem>_openvino_model/`` holding ``<stem>.xml`` (graph), ``<stem>.bin`` (weights) and
``metadata.yaml`` (the :class:`~lightning_yolo.export.metadata.ExportMetadata` keys). ``--half`` stores the weights
in float16 (OpenVINO computes in its own precision on each device); ``--int8`` quantises weights and activations
(NNCF's mixed preset), calibrated on up to :data:`CALIBRATION_IMAGES` images of the dataset yaml's ``val`` split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from lightning_yolo.export.extras import require

if TYPE_CHECKING:
    from lightning_yolo.export.formats import ExportJob

__all__ = ["CALIBRATION_IMAGES", "calibration_images", "write_openvino"]

CALIBRATION_IMAGES = 300
"""Most images NNCF calibrates INT8 activations on (NNCF's default subset size)."""


def calibration_images(data: str, shape: tuple[int, int], limit: int = CALIBRATION_IMAGES) -> Iterator[np.ndarray]:
    """Letterboxed (1, 3, H, W) float32 RGB inputs in [0, 1] from the ``val`` split of a dataset yaml.

    Raises:
        DatasetError: the yaml is bad or the split has no images.
    """
    import cv2

    from lightning_yolo.data.config import DatasetError, list_images, load_dataset_config
    from lightning_yolo.data.transforms import letterbox

    config = load_dataset_config(data)
    files = list_images(config.splits["val"], config.root, what="val")[:limit]
    if not files:
        raise DatasetError(f"{data}: the val split has no images to calibrate --int8 on")
    for file in files:
        image = cv2.imread(str(file))
        if image is None:
            continue
        img, _, _ = letterbox(image, shape, auto=False)
        yield np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])[None].astype(np.float32) / 255


def _quantize(model: Any, job: ExportJob) -> Any:
    """NNCF INT8 post-training quantisation of an OpenVINO model on the dataset's images."""
    nncf = require("nncf", "--int8")
    shape = tuple(job.example.shape[2:])
    images = list(calibration_images(str(job.data), shape))  # type: ignore[arg-type]
    return nncf.quantize(model, nncf.Dataset(images), preset=nncf.QuantizationPreset.MIXED, subset_size=len(images))


def write_openvino(job: ExportJob, path: Path) -> Path:
    """Convert through a temporary float32 ONNX file, quantise with ``job.int8``, save the IR and its metadata."""
    from lightning_yolo.export.to_onnx import write_onnx

    ov = require("openvino", "--format openvino")
    path.mkdir(parents=True, exist_ok=True)
    stem = path.name.removesuffix("_openvino_model")
    onnx_file = path / f"{stem}.onnx"
    float_job = dataclasses.replace(job, model=job.model.float(), example=job.example.float(), nms=False, half=False)
    try:
        write_onnx(float_job, onnx_file)
        model = ov.convert_model(str(onnx_file))
    finally:
        onnx_file.unlink(missing_ok=True)
    if job.int8:
        model = _quantize(model, job)
    ov.save_model(model, str(path / f"{stem}.xml"), compress_to_fp16=job.half)
    meta = {k: json.loads(v) for k, v in job.metadata().to_strings().items()}
    meta["int8"] = job.int8
    (path / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return path
