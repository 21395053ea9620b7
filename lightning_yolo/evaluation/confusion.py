"""Detection confusion matrix with a background class (YOLOv5 semantics); ``DetectionMetric`` accumulates it."""

from __future__ import annotations

from typing import Any

import torch

from lightning_yolo.evaluation.matching import greedy_match
from lightning_yolo.ops.iou import box_iou


def confusion_update(
    matrix: torch.Tensor, detections: torch.Tensor, labels: torch.Tensor, conf: float = 0.25, iou_thres: float = 0.45
) -> None:
    """Add one image to a ``(nc + 1, nc + 1)`` matrix indexed ``[predicted class, true class]``, in place.

    The last row and column are background. YOLOv5's rules, kept for comparable numbers: only detections with
    confidence above ``conf`` take part; a label and a detection of any class pair up when their IoU exceeds
    ``iou_thres`` (one-to-one, highest IoU first); an unpaired label counts as predicted background. Unpaired
    detections count as background false positives only when the image has at least one pair, and an image
    without labels adds nothing (callers skip it).

    Args:
        matrix: Integer counts, updated in place.
        detections: ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]``; may be empty.
        labels: ``(m, 5)`` ``[cls, x1, y1, x2, y2]`` in the same pixel frame.
        conf: Confidence threshold.
        iou_thres: IoU threshold for a pair.
    """
    background = matrix.shape[0] - 1
    detections = detections[detections[:, 4] > conf]
    true_cls = labels[:, 0].long().to(matrix.device)
    det_cls = detections[:, 5].long().to(matrix.device)
    iou = box_iou(labels[:, 1:], detections[:, :4])  # (m, n)
    label_idx, det_idx = (torch.from_numpy(x).to(matrix.device) for x in greedy_match(iou, iou > iou_thres, True))
    predicted = torch.full_like(true_cls, background)
    predicted[label_idx] = det_cls[det_idx]
    matrix.index_put_((predicted, true_cls), torch.ones_like(true_cls), accumulate=True)
    if label_idx.numel():
        unpaired = torch.ones_like(det_cls, dtype=torch.bool)
        unpaired[det_idx] = False
        false_cls = det_cls[unpaired]
        matrix.index_put_((false_cls, torch.full_like(false_cls, background)), torch.ones_like(false_cls), True)


def confusion_update_image(matrix: torch.Tensor, detections: torch.Tensor, labels: torch.Tensor, **kwargs: Any) -> None:
    """``confusion_update`` for one validation image, with YOLOv5's handling of empty images.

    An image without detections counts every label as missed (background); one without labels adds nothing.
    """
    if not labels.shape[0]:
        return
    if not detections.shape[0]:
        true_cls = labels[:, 0].long().to(matrix.device)
        matrix[-1].index_add_(0, true_cls, torch.ones_like(true_cls))
        return
    confusion_update(matrix, detections, labels, **kwargs)
