"""YOLOv5's test-time augmentation: three passes (scales 1, 0.83 flipped left-right, 0.67) merged before NMS.

Used by ``predict --augment`` and by validation with ``--model.augment``. Torch only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lightning_yolo.models.yolo import DetectionModel

TTA_SCALES = (1.0, 0.83, 0.67)
"""Image scales of test-time augmentation (YOLOv5's)."""
TTA_FLIPS = (None, 3, None)
"""Flip of each TTA pass: None, or the tensor dimension to flip (3 = left-right)."""
TTA_PAD_VALUE = 0.447  # grey (about the ImageNet mean) used to pad scaled TTA inputs, as YOLOv5 does


def _scale_image(x: torch.Tensor, ratio: float, stride: int) -> torch.Tensor:
    """Resize a (bs, 3, H, W) batch by ``ratio`` and pad it up to multiples of ``stride`` (bottom/right)."""
    if ratio == 1.0:
        return x
    h, w = x.shape[2:]
    size = (int(h * ratio), int(w * ratio))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    ph, pw = (math.ceil(v * ratio / stride) * stride for v in (h, w))
    return F.pad(x, [0, pw - size[1], 0, ph - size[0]], value=TTA_PAD_VALUE)


def _descale(pred: torch.Tensor, flip: int | None, ratio: float, hw: tuple[int, int]) -> torch.Tensor:
    """Boxes of a TTA pass back in the frame of the unscaled, unflipped input; ``pred`` is (bs, N, 5 + nc)."""
    x, y, wh = pred[..., 0:1] / ratio, pred[..., 1:2] / ratio, pred[..., 2:4] / ratio
    if flip == 2:
        y = hw[0] - y
    elif flip == 3:
        x = hw[1] - x
    return torch.cat((x, y, wh, pred[..., 4:]), -1)


def _clip_tails(preds: list[torch.Tensor], nl: int) -> list[torch.Tensor]:
    """Drop the coarsest level from the full-size pass and the finest level from the smallest pass.

    Rows are ordered level by level and level i holds 1 / 4**i of the finest level's rows, so the whole output
    counts ``sum(4**i)`` units of the coarsest level's size.
    """
    units = sum(4**i for i in range(nl))
    coarsest = preds[0].shape[1] // units
    preds[0] = preds[0][:, :-coarsest]  # large objects are left to the scaled passes
    finest = (preds[-1].shape[1] // units) * 4 ** (nl - 1)
    preds[-1] = preds[-1][:, finest:]  # small objects are left to the full-size pass
    return preds


def augmented_forward(model: DetectionModel, x: torch.Tensor) -> torch.Tensor:
    """YOLOv5 test-time augmentation: passes at scales 1, 0.83 (flipped left-right) and 0.67, merged.

    Args:
        model: the model in eval mode.
        x: (bs, 3, H, W) input with H, W multiples of the largest stride.

    Returns:
        (bs, N', 5 + nc) decoded predictions in the pixels of ``x``, ready for NMS.
    """
    hw = (x.shape[2], x.shape[3])
    stride = int(model.stride.max())
    preds = []
    for ratio, flip in zip(TTA_SCALES, TTA_FLIPS, strict=True):
        xi = _scale_image(x.flip(flip) if flip else x, ratio, stride)
        preds.append(_descale(model(xi), flip, ratio, hw))
    return torch.cat(_clip_tails(preds, model.model[-1].nl), 1)
