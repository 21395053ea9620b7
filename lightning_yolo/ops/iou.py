"""Intersection over union: pairwise (matching) and elementwise with GIoU / DIoU / CIoU (the box loss)."""

from __future__ import annotations

import math

import torch
import torchvision


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(n, 4)`` and ``(m, 4)`` ``[x1, y1, x2, y2]`` boxes -> ``(n, m)``."""
    return torchvision.ops.box_iou(boxes1, boxes2)


def _corners(box: torch.Tensor, xywh: bool, eps: float) -> tuple[torch.Tensor, ...]:
    """Split boxes into ``(x1, y1, x2, y2, w, h)`` columns, each ``(..., 1)``.

    In the corner format ``eps`` is added to the height: the aspect-ratio term of CIoU divides by it.
    """
    if xywh:
        x, y, w, h = box.chunk(4, -1)
        half_w, half_h = w / 2, h / 2
        return x - half_w, y - half_h, x + half_w, y + half_h, w, h
    x1, y1, x2, y2 = box.chunk(4, -1)
    return x1, y1, x2, y2, x2 - x1, y2 - y1 + eps


def bbox_iou(
    box1: torch.Tensor,
    box2: torch.Tensor,
    xywh: bool = True,
    giou: bool = False,
    diou: bool = False,
    ciou: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Elementwise (broadcasting) IoU of two box sets, optionally generalised, distance or complete IoU.

    Args:
        box1: Boxes ``(..., 4)``.
        box2: Boxes ``(..., 4)`` broadcastable against ``box1``.
        xywh: Boxes are ``[x_centre, y_centre, w, h]``; otherwise ``[x1, y1, x2, y2]``.
        giou: Return GIoU (IoU minus the empty fraction of the enclosing box).
        diou: Return DIoU (IoU minus squared centre distance over squared enclosing diagonal).
        ciou: Return CIoU (DIoU minus an aspect-ratio consistency term); takes precedence over ``diou``/``giou``.
        eps: Guards every division.

    Returns:
        ``(..., 1)`` IoU values; GIoU, DIoU and CIoU can be negative.
    """
    ax1, ay1, ax2, ay2, aw, ah = _corners(box1, xywh, eps)
    bx1, by1, bx2, by2, bw, bh = _corners(box2, xywh, eps)

    inter = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp(0) * (torch.min(ay2, by2) - torch.max(ay1, by1)).clamp(0)
    union = aw * ah + bw * bh - inter + eps
    iou = inter / union
    if not (giou or diou or ciou):
        return iou

    enclose_w = torch.max(ax2, bx2) - torch.min(ax1, bx1)
    enclose_h = torch.max(ay2, by2) - torch.min(ay1, by1)
    if not (diou or ciou):
        enclose_area = enclose_w * enclose_h + eps
        return iou - (enclose_area - union) / enclose_area

    diag2 = enclose_w**2 + enclose_h**2 + eps
    centre_dist2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    if not ciou:
        return iou - centre_dist2 / diag2

    v = (4 / math.pi**2) * torch.pow(torch.atan(bw / bh) - torch.atan(aw / ah), 2)
    with torch.no_grad():  # the trade-off weight is a constant for the gradient (CIoU paper)
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre_dist2 / diag2 + v * alpha)
