"""ONNX: PyTorch's TorchScript-based exporter (works offline), optionally slimmed, float16 or ending in NMS.

Input ``images`` float (bs, 3, H, W) RGB in [0, 1]; output ``output0`` float (bs, N, 5 + nc) of decoded predictions,
or with ``--nms`` the final detections described in :mod:`lightning_yolo.export.onnx_nms`. The metadata
(:class:`~lightning_yolo.export.metadata.ExportMetadata`) is in ``metadata_props``; read it with
``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lightning_yolo.export.extras import require
from lightning_yolo.export.onnx_nms import PRE_NMS_OUTPUTS, PreNMS, append_nms

if TYPE_CHECKING:
    from lightning_yolo.export.formats import ExportJob

__all__ = ["write_onnx"]


def _trace_to_onnx(job: ExportJob, path: Path) -> None:
    """Write the plain graph, or the graph ending in NMS, to ``path``."""
    image_axes = {0: "batch", 2: "height", 3: "width"}
    if job.nms:  # the suppression is appended after the trace (append_nms)
        model, outputs = PreNMS(job.model), PRE_NMS_OUTPUTS
        rows = {0: "batch", 1: "anchors"}
        axes = {"images": image_axes, **dict.fromkeys(outputs, rows), "nms_scores": {0: "batch", 2: "anchors"}}
        axes = axes if job.dynamic else {}
    else:
        model, outputs = job.model, ["output0"]
        axes = {"images": image_axes, "output0": {0: "batch", 1: "anchors"}} if job.dynamic else {}
    torch.onnx.export(
        model,
        (job.example,),
        str(path),
        opset_version=job.opset,
        input_names=["images"],
        output_names=outputs,
        dynamic_axes=axes or None,
        do_constant_folding=True,
        dynamo=False,
    )


def write_onnx(job: ExportJob, path: Path) -> Path:
    """Export, slim with onnxslim when ``job.simplify``, add the metadata and check the model."""
    onnx = require("onnx", "--format onnx")
    if job.simplify:
        require("onnxslim", "--simplify")
    _trace_to_onnx(job, path)
    proto = onnx.load(str(path))
    if job.nms:
        proto = append_nms(proto)
    if job.simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    del proto.metadata_props[:]
    for key, value in job.metadata().to_strings().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path
