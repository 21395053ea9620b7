"""Box format conversions, rescaling and clipping for torch tensors and numpy arrays.

Formats are named in the function names: ``xyxy`` (corners), ``xywh`` (centre, width, height); an ``n`` suffix
means normalised to [0, 1] by the image width and height. Every function works on the last dimension, so boxes
may have shape ``(4,)``, ``(n, 4)`` or ``(..., >=4)``; columns beyond the fourth are copied unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

Boxes = TypeVar("Boxes", torch.Tensor, np.ndarray)


def _copy(x: Boxes) -> Boxes:
    """A copy of ``x`` of the same kind, so conversions never modify their input."""
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xywh_to_xyxy(x: Boxes) -> Boxes:
    """Convert ``[x_centre, y_centre, w, h]`` to ``[x1, y1, x2, y2]`` (same units)."""
    y = _copy(x)
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0] = x[..., 0] - half_w
    y[..., 1] = x[..., 1] - half_h
    y[..., 2] = x[..., 0] + half_w
    y[..., 3] = x[..., 1] + half_h
    return y


def xyxy_to_xywh(x: Boxes) -> Boxes:
    """Convert ``[x1, y1, x2, y2]`` to ``[x_centre, y_centre, w, h]`` (same units)."""
    y = _copy(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywhn_to_xyxy(x: Boxes, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Boxes:
    """Convert normalised ``[x_centre, y_centre, w, h]`` to pixel ``[x1, y1, x2, y2]``.

    Args:
        x: Normalised boxes.
        w: Width in pixels that 1.0 stands for along x.
        h: Height in pixels that 1.0 stands for along y.
        padw: Pixels added to every x coordinate (e.g. a letterbox or mosaic offset).
        padh: Pixels added to every y coordinate.
    """
    y = _copy(x)
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0] = w * (x[..., 0] - half_w) + padw
    y[..., 1] = h * (x[..., 1] - half_h) + padh
    y[..., 2] = w * (x[..., 0] + half_w) + padw
    y[..., 3] = h * (x[..., 1] + half_h) + padh
    return y


def xyxy_to_xywhn(x: Boxes, w: float = 640, h: float = 640, clip: bool = False, eps: float = 0.0) -> Boxes:
    """Convert pixel ``[x1, y1, x2, y2]`` to normalised ``[x_centre, y_centre, w, h]``.

    Args:
        x: Pixel boxes; not modified (the clip works on a copy).
        w: Image width in pixels.
        h: Image height in pixels.
        clip: Clip the corners to ``[0, w - eps] x [0, h - eps]`` first.
        eps: Margin kept inside the image when clipping, so normalised values stay strictly below 1.
    """
    if clip:
        x = clip_boxes(_copy(x), (h - eps, w - eps))
    y = _copy(x)
    y[..., 0] = ((x[..., 0] + x[..., 2]) / 2) / w
    y[..., 1] = ((x[..., 1] + x[..., 3]) / 2) / h
    y[..., 2] = (x[..., 2] - x[..., 0]) / w
    y[..., 3] = (x[..., 3] - x[..., 1]) / h
    return y


def clip_boxes(boxes: Boxes, shape: Sequence[float]) -> Boxes:
    """Clip ``[x1, y1, x2, y2]`` boxes in place to an image of ``shape = (height, width)``; returns ``boxes``."""
    height, width = shape[0], shape[1]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, width)
        boxes[..., 1].clamp_(0, height)
        boxes[..., 2].clamp_(0, width)
        boxes[..., 3].clamp_(0, height)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, width)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, height)
    return boxes


def scale_boxes(
    img1_shape: Sequence[int],
    boxes: Boxes,
    img0_shape: Sequence[int],
    ratio_pad: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Boxes:
    """Map ``[x1, y1, x2, y2]`` boxes from a letterboxed image back to the original image, in place.

    Args:
        img1_shape: ``(height, width)`` of the letterboxed image the boxes are in.
        boxes: Boxes in ``img1_shape`` pixels; modified in place and returned.
        img0_shape: ``(height, width)`` of the original image.
        ratio_pad: ``((ratio_h, ratio_w), (pad_w, pad_h))`` as recorded by the letterbox (pads are the half
            paddings). When None, both are derived assuming a centred letterbox of ``img0_shape`` into
            ``img1_shape``. Only ``ratio_h`` is used, the letterbox scales both axes alike.

    Returns:
        ``boxes`` in original-image pixels, clipped to ``img0_shape``.
    """
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])  # letterboxed / original
        pad_w = (img1_shape[1] - img0_shape[1] * gain) / 2
        pad_h = (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        pad_w, pad_h = ratio_pad[1][0], ratio_pad[1][1]
    boxes[..., [0, 2]] -= pad_w
    boxes[..., [1, 3]] -= pad_h
    boxes[..., :4] /= gain
    return clip_boxes(boxes, img0_shape)
