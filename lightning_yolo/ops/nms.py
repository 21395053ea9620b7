"""Non-maximum suppression of decoded detector outputs (YOLOv5 semantics, torchvision kernel)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision

from lightning_yolo.ops.boxes import xywh_to_xyxy

MAX_WH = 7680  # px: per-class box offset, larger than any image, so boxes of different classes never overlap
MAX_NMS = 30000  # most boxes handed to torchvision.ops.nms per image


def _detections(x: torch.Tensor, conf_thres: float, multi_label: bool) -> torch.Tensor:
    """Turn candidate rows ``(k, 5 + nc)`` into detections ``(d, 6)`` ``[x1, y1, x2, y2, score, cls]``.

    The score is objectness times class probability. With ``multi_label`` every class scoring above
    ``conf_thres`` gives its own detection; otherwise only the best class does.
    """
    scores = x[:, 5:] * x[:, 4:5]  # (k, nc)
    box = xywh_to_xyxy(x[:, :4])
    if multi_label:
        row, cls = (scores > conf_thres).nonzero(as_tuple=True)
        return torch.cat((box[row], scores[row, cls, None], cls[:, None].float()), 1)
    best, cls = scores.max(1, keepdim=True)
    return torch.cat((box, best, cls.float()), 1)[best.view(-1) > conf_thres]


def _suppress(det: torch.Tensor, iou_thres: float, agnostic: bool, max_det: int) -> torch.Tensor:
    """Keep the highest-scoring of overlapping detections, per class unless ``agnostic``; at most ``max_det``."""
    det = det[det[:, 4].argsort(descending=True)[:MAX_NMS]]
    offsets = det[:, 5:6] * (0 if agnostic else MAX_WH)  # shift each class to its own region of the plane
    keep = torchvision.ops.nms(det[:, :4] + offsets, det[:, 4], iou_thres)
    return det[keep[:max_det]]


def non_max_suppression(
    prediction: torch.Tensor | Sequence[torch.Tensor],
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
) -> list[torch.Tensor]:
    """Filter decoded predictions by score and suppress overlapping boxes, per image.

    Args:
        prediction: ``(bs, N, 5 + nc)`` rows ``[x, y, w, h, objectness, class probabilities...]`` with boxes in
            input pixels and probabilities after the sigmoid (the detection model's eval output). A tuple or list
            (eval output, raw outputs) is accepted and its first item used.
        conf_thres: Keep rows with objectness above it, then (class score = objectness * class probability)
            above it.
        iou_thres: IoU above which the lower-scoring of two same-class boxes is dropped.
        classes: Keep only these class indices.
        agnostic: Suppress across classes.
        multi_label: One detection per class scoring above ``conf_thres`` (ignored when nc == 1).
        max_det: Most detections kept per image.

    Returns:
        ``bs`` tensors ``(n, 6)`` ``[x1, y1, x2, y2, score, cls]`` sorted by score, on the input's device.

    Raises:
        ValueError: A threshold outside [0, 1].
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres {conf_thres} and iou_thres {iou_thres} must both lie in [0, 1]")
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    multi_label = multi_label and prediction.shape[2] > 6  # one class: a single label per box anyway
    wanted = None if classes is None else torch.tensor(classes, device=prediction.device, dtype=torch.float32)
    output = []
    for x in prediction:  # (N, 5 + nc) per image
        det = _detections(x[x[:, 4] > conf_thres], conf_thres, multi_label)
        if wanted is not None:
            det = det[(det[:, 5:6] == wanted).any(1)]
        output.append(_suppress(det, iou_thres, agnostic, max_det) if det.shape[0] else det)
    return output
