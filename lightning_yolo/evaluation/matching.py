"""Matching detections to labels: which detections are true positives (validation) and which pairs a confusion
matrix counts, both by YOLOv5's greedy highest-IoU-first rule.
"""

from __future__ import annotations

import numpy as np
import torch

from lightning_yolo.ops.iou import box_iou


def greedy_match(iou: torch.Tensor, candidate: torch.Tensor, resort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of labels to detections, highest IoU first.

    Among the candidate pairs each detection keeps its highest-IoU label; then each label keeps one of the
    detections left for it: the highest-IoU one when ``resort`` (the confusion matrix), else the one with the lowest
    detection index, i.e. the most confident after NMS (validation matching, as YOLOv5 val.py does).

    Args:
        iou: ``(m, n)`` IoU of ``m`` labels with ``n`` detections.
        candidate: ``(m, n)`` bool, pairs allowed to match.
        resort: Re-sort by IoU before picking one detection per label.

    Returns:
        Label indices and detection indices ``(k,)`` of the matched pairs.
    """
    label, det = (x.cpu().numpy() for x in torch.nonzero(candidate, as_tuple=True))
    if label.shape[0] > 1:
        score = iou[candidate].cpu().numpy()  # row-major, aligned with (label, det)
        order = np.argsort(score)[::-1]
        label, det, score = label[order], det[order], score[order]
        first = np.unique(det, return_index=True)[1]  # best label per detection, now in detection order
        label, det, score = label[first], det[first], score[first]
        if resort:
            order = np.argsort(score)[::-1]
            label, det = label[order], det[order]
        first = np.unique(label, return_index=True)[1]
        label, det = label[first], det[first]
    return label, det


def match_predictions(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """Which detections are true positives at each IoU threshold.

    Args:
        detections: ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]``, sorted by confidence (as NMS returns them).
        labels: ``(m, 5)`` ``[cls, x1, y1, x2, y2]`` in the same pixel frame.
        iouv: ``(t,)`` IoU thresholds, e.g. ``torch.linspace(0.5, 0.95, 10)``.

    Returns:
        ``(n, t)`` bool on the detections' device: matched to a same-class label with IoU >= threshold, each label
        matched at most once per threshold.
    """
    correct = np.zeros((detections.shape[0], iouv.shape[0]), dtype=bool)
    if detections.shape[0] and labels.shape[0]:
        iou = box_iou(labels[:, 1:], detections[:, :4])  # (m, n)
        same_class = labels[:, 0:1] == detections[:, 5]  # (m, n)
        for k, threshold in enumerate(iouv.to(iou.device)):
            _, det = greedy_match(iou, (iou >= threshold) & same_class)
            correct[det, k] = True
    return torch.from_numpy(correct).to(detections.device)
