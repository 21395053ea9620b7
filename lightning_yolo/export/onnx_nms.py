"""``export --nms``: the detector followed by non-maximum suppression, as one ONNX graph.

The graph takes ``images`` and three run-time settings and returns final detections, the same ones ``predict``
keeps (best class per box, score = objectness x class probability, per-class suppression):

* inputs: ``images`` float (bs, 3, H, W) RGB in [0, 1]; ``max_det`` int64 (1,): most detections per image;
  ``iou_thres`` float (1,): IoU above which the lower-scoring of two same-class boxes is dropped;
  ``conf_thres`` float (1,): scores at or below it are dropped.
* outputs, one row per detection, images in order, each image's rows by falling score: ``boxes`` float (K, 4)
  ``[x1, y1, x2, y2]`` in input pixels, ``scores`` float (K,), ``classes`` int64 (K,), ``batch_index`` int64 (K,).

The detector and the score/box arithmetic are traced from PyTorch (:class:`PreNMS`); the suppression is ONNX's
``NonMaxSuppression`` operator, appended to the graph by :func:`append_nms` with the gathers that pick the kept
rows. Classes are kept apart by shifting each class's boxes to its own region of the plane, as
:func:`lightning_yolo.ops.nms.non_max_suppression` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lightning_yolo.ops.nms import MAX_WH

__all__ = ["NMS_INPUTS", "NMS_OUTPUTS", "PRE_NMS_OUTPUTS", "PreNMS", "append_nms"]

PRE_NMS_OUTPUTS = ["nms_boxes", "nms_scores", "box_xyxy", "box_score", "box_class"]
NMS_INPUTS = ["max_det", "iou_thres", "conf_thres"]
NMS_OUTPUTS = ["boxes", "scores", "classes", "batch_index"]


class PreNMS(nn.Module):
    """The detector and what NMS needs from it: outputs named by :data:`PRE_NMS_OUTPUTS`.

    ``nms_boxes`` (bs, N, 4) xyxy shifted by class, ``nms_scores`` (bs, 1, N), ``box_xyxy`` (bs, N, 4),
    ``box_score`` (bs, N) and ``box_class`` (bs, N) int64, all float32 (also for a float16 model).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pred = self.model(images).float()  # (bs, N, 5 + nc) centre x, centre y, w, h, objectness, classes
        xy, half_wh = pred[..., :2], pred[..., 2:4] / 2
        box = torch.cat((xy - half_wh, xy + half_wh), -1)  # (bs, N, 4) xyxy
        score, cls = (pred[..., 5:] * pred[..., 4:5]).max(-1)  # (bs, N) best class per box
        shifted = box + cls.unsqueeze(-1).float() * MAX_WH
        return shifted, score.unsqueeze(1), box, score, cls


def append_nms(proto: Any) -> Any:
    """Turn a graph exported from :class:`PreNMS` into the ``--nms`` graph (inputs and outputs as documented above).

    Args:
        proto: an ``onnx.ModelProto`` whose outputs are :data:`PRE_NMS_OUTPUTS`.
    """
    from onnx import TensorProto, helper

    graph = proto.graph
    graph.input.extend(
        [
            helper.make_tensor_value_info("max_det", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("iou_thres", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("conf_thres", TensorProto.FLOAT, [1]),
        ]
    )
    const = [
        helper.make_tensor("nms_col0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("nms_col2", TensorProto.INT64, [1], [2]),
    ]
    graph.initializer.extend(const)
    nodes = [
        helper.make_node(
            "NonMaxSuppression", ["nms_boxes", "nms_scores", "max_det", "iou_thres", "conf_thres"], ["nms_selected"]
        ),  # (K, 3) [image, class column (0), box index]
        helper.make_node("Gather", ["nms_selected", "nms_col0"], ["nms_image"], axis=1),  # (K, 1)
        helper.make_node("Gather", ["nms_selected", "nms_col2"], ["nms_index"], axis=1),  # (K, 1)
        helper.make_node("Concat", ["nms_image", "nms_index"], ["nms_pairs"], axis=1),  # (K, 2)
        helper.make_node("GatherND", ["box_xyxy", "nms_pairs"], ["boxes"]),
        helper.make_node("GatherND", ["box_score", "nms_pairs"], ["scores"]),
        helper.make_node("GatherND", ["box_class", "nms_pairs"], ["classes"]),
        helper.make_node("Squeeze", ["nms_image", "nms_col2_axis"], ["batch_index"]),
    ]
    graph.initializer.append(helper.make_tensor("nms_col2_axis", TensorProto.INT64, [1], [1]))
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, ["detections"]),
            helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["detections"]),
        ]
    )
    return proto
