"""The YOLOv5 training loss: anchor matching, CIoU box loss, objectness and class BCE.

The loss knows anchors, the number of classes and its gains; it holds no reference to the model, so it can be
built and tested on its own. Predictions are the raw training-mode head outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_yolo.ops.iou import bbox_iou

# Neighbour cells a target may also be assigned to: itself, left, up, right, down (in units of the 0.5 bias).
_CELL_OFFSETS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))
_OFFSET_BIAS = 0.5


def scale_loss_gains(box: float, cls: float, obj: float, nl: int, nc: int, imgsz: int) -> tuple[float, float, float]:
    """Scale the hyper-parameter gains to the model's levels, classes and image size, as YOLOv5 training does.

    The hyp files are tuned for 3 levels, 80 classes and 640 px; returns ``(box, cls, obj)``.
    """
    level_scale = 3 / nl
    return box * level_scale, cls * nc / 80 * level_scale, obj * (imgsz / 640) ** 2 * level_scale


def level_balance(nl: int) -> list[float]:
    """Objectness weight of each level (P3 first): small-object levels count more."""
    if nl == 3:
        return [4.0, 1.0, 0.4]
    if not 1 <= nl <= 5:
        raise ValueError(f"YOLOLoss supports 1 to 5 detection levels, got {nl}")
    return [4.0, 1.0, 0.25, 0.06, 0.02][:nl]


class FocalLoss(nn.Module):
    """Focal loss around a BCE-with-logits loss: down-weights well-classified elements.

    Args:
        gamma: Focusing exponent on ``1 - p_t``.
        alpha: Weight of positives (``1 - alpha`` for negatives).
        pos_weight: BCE positive weight, as in ``nn.BCEWithLogitsLoss``.
    """

    def __init__(self, gamma: float, alpha: float = 0.25, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma, self.alpha = gamma, alpha
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """Mean focal loss of logits ``pred`` against targets ``true`` in [0, 1] (same shape)."""
        loss = F.binary_cross_entropy_with_logits(pred, true, pos_weight=self.pos_weight, reduction="none")
        prob = pred.sigmoid()
        p_t = true * prob + (1 - true) * (1 - prob)
        alpha_t = true * self.alpha + (1 - true) * (1 - self.alpha)
        return (loss * alpha_t * (1.0 - p_t) ** self.gamma).mean()


class _BCE(nn.Module):
    """Mean BCE with logits whose ``pos_weight`` is a non-persistent buffer (moves with ``.to()``, not saved)."""

    def __init__(self, pos_weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(pred, true, pos_weight=self.pos_weight)


def _criterion(pos_weight: float, fl_gamma: float) -> nn.Module:
    """Plain BCE, or focal BCE when ``fl_gamma > 0``."""
    weight = torch.tensor([pos_weight])
    return FocalLoss(fl_gamma, pos_weight=weight) if fl_gamma > 0 else _BCE(weight)


class YOLOLoss(nn.Module):
    """YOLOv5 loss (ComputeLoss) for ``nl`` detection levels with ``na`` anchors each.

    Args:
        anchors: ``(nl, na, 2)`` anchor width and height in grid units (pixels / stride). Kept as the persistent
            buffer ``anchors``, so AutoAnchor can overwrite it and checkpoints restore it.
        strides: ``(nl,)`` stride of each level in pixels (kept as a buffer for reference).
        nc: Number of classes; with one class there is no class loss.
        box: Gain of the box (CIoU) loss, already scaled by ``scale_loss_gains``.
        obj: Gain of the objectness loss, already scaled.
        cls: Gain of the class loss, already scaled.
        cls_pw: BCE positive weight of the class loss.
        obj_pw: BCE positive weight of the objectness loss.
        anchor_t: A target matches an anchor when neither side ratio exceeds this.
        fl_gamma: Focal loss gamma for both BCEs; 0 disables focal loss.
        label_smoothing: Class targets become ``1 - eps / 2`` and ``eps / 2``.
    """

    def __init__(
        self,
        anchors: torch.Tensor,
        strides: Sequence[float] | torch.Tensor,
        nc: int,
        box: float = 0.05,
        obj: float = 1.0,
        cls: float = 0.5,
        cls_pw: float = 1.0,
        obj_pw: float = 1.0,
        anchor_t: float = 4.0,
        fl_gamma: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        anchors = torch.as_tensor(anchors, dtype=torch.float32)
        if anchors.ndim != 3 or anchors.shape[-1] != 2:
            raise ValueError(f"anchors must have shape (nl, na, 2), got {tuple(anchors.shape)}")
        self.register_buffer("anchors", anchors.clone())
        self.register_buffer("strides", torch.as_tensor(strides, dtype=torch.float32).clone(), persistent=False)
        self.nl, self.na, self.nc = anchors.shape[0], anchors.shape[1], nc
        self.balance = level_balance(self.nl)
        self.box_gain, self.obj_gain, self.cls_gain = box, obj, cls
        self.anchor_t = anchor_t
        self.cls_pos, self.cls_neg = 1.0 - 0.5 * label_smoothing, 0.5 * label_smoothing
        self.cls_loss = _criterion(cls_pw, fl_gamma)
        self.obj_loss = _criterion(obj_pw, fl_gamma)
        self.register_buffer("cell_offsets", torch.tensor(_CELL_OFFSETS, dtype=torch.float32) * _OFFSET_BIAS, False)

    def forward(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the loss of one batch.

        Args:
            preds: ``nl`` raw head outputs ``(bs, na, ny, nx, 5 + nc)`` (logits).
            targets: ``(n, 6)`` rows ``[image index, class, x, y, w, h]``, box normalised to the batch image.

        Returns:
            ``(total * bs)`` of shape ``(1,)`` to back-propagate, and the detached ``(3,)`` items
            ``[box, obj, cls]`` (gains applied, not multiplied by the batch size) for logging.
        """
        device = preds[0].device
        targets = targets.to(device)
        lbox, lobj, lcls = (torch.zeros(1, device=device) for _ in range(3))
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)
        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=device)  # (bs, na, ny, nx)
            if b.shape[0]:
                matched = pi[b, a, gj, gi]  # (n, 5 + nc): predictions at the assigned cells
                iou = self._box_iou(matched, tbox[i], anchors[i])
                lbox += (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).type(tobj.dtype)  # objectness target = IoU
                if self.nc > 1:
                    lcls += self._class_loss(matched[:, 5:], tcls[i])
            lobj += self.obj_loss(pi[..., 4], tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    @staticmethod
    def _box_iou(matched: torch.Tensor, tbox: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """CIoU ``(n,)`` of decoded matched predictions against their targets (both in grid units, cell-relative)."""
        pxy = matched[:, :2].sigmoid() * 2 - 0.5
        pwh = (matched[:, 2:4].sigmoid() * 2) ** 2 * anchors
        return bbox_iou(torch.cat((pxy, pwh), 1), tbox, ciou=True).squeeze(-1)

    def _class_loss(self, logits: torch.Tensor, tcls: torch.Tensor) -> torch.Tensor:
        """BCE of ``(n, nc)`` class logits against (smoothed) one-hot targets."""
        target = torch.full_like(logits, self.cls_neg)
        target[torch.arange(logits.shape[0], device=logits.device), tcls] = self.cls_pos
        return self.cls_loss(logits, target)

    @torch.no_grad()
    def build_targets(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, ...]], list[torch.Tensor]]:
        """Assign targets to anchors and grid cells, level by level.

        A target goes to every anchor whose width and height ratios to it are all within ``anchor_t``, at its own
        cell and at the (up to) two neighbour cells whose shared border is nearest its centre.

        Args:
            preds: ``nl`` raw outputs ``(bs, na, ny, nx, 5 + nc)`` (only their shapes are used).
            targets: ``(n, 6)`` ``[image, class, x, y, w, h]`` normalised.

        Returns:
            Per level, for the ``k`` assignments: ``tcls`` ``(k,)`` class; ``tbox`` ``(k, 4)`` centre offset from
            the cell's corner and width, height (grid units); ``indices`` tuple of ``(k,)`` image, anchor, grid y,
            grid x; ``anchors`` ``(k, 2)`` the matched anchor sizes (grid units).
        """
        na, nt = self.na, targets.shape[0]
        anchor_index = torch.arange(na, device=targets.device, dtype=targets.dtype).view(na, 1, 1).expand(na, nt, 1)
        labelled = torch.cat((targets.expand(na, nt, 6), anchor_index), 2)  # (na, nt, 7): targets + anchor index
        tcls, tbox, indices, anch = [], [], [], []
        for i, pi in enumerate(preds):
            ny, nx = pi.shape[2], pi.shape[3]
            gain = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=targets.device, dtype=targets.dtype)
            t, offsets = self._assign(labelled * gain, self.anchors[i], nx, ny)  # (k, 7), (k, 2)
            image, cls = t[:, 0].long(), t[:, 1].long()
            gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
            gij = (gxy - offsets).long()
            gij[:, 0].clamp_(0, nx - 1)
            gij[:, 1].clamp_(0, ny - 1)
            indices.append((image, a, gij[:, 1], gij[:, 0]))
            tbox.append(torch.cat((gxy - gij, gwh), 1))
            anch.append(self.anchors[i][a])
            tcls.append(cls)
        return tcls, tbox, indices, anch

    def _assign(self, t: torch.Tensor, anchors: torch.Tensor, nx: int, ny: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter ``(na, nt, 7)`` grid-unit targets by anchor shape and add neighbour cells.

        Returns the kept rows ``(k, 7)`` ordered by cell offset, then anchor, then target, and each row's cell
        offset ``(k, 2)`` (to subtract from the centre).
        """
        ratio = t[..., 4:6] / anchors[:, None]  # (na, nt, 2)
        t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.anchor_t]  # (m, 7)
        gxy = t[:, 2:4]
        gxy_inv = torch.tensor([nx, ny], device=t.device, dtype=t.dtype) - gxy
        near_low = (gxy % 1 < _OFFSET_BIAS) & (gxy > 1)  # (m, 2): also use the left / upper neighbour
        near_high = (gxy_inv % 1 < _OFFSET_BIAS) & (gxy_inv > 1)  # (m, 2): also use the right / lower neighbour
        keep = torch.cat((torch.ones_like(near_low[:, :1]), near_low, near_high), 1).T  # (5, m)
        offsets = self.cell_offsets.to(t.dtype)[:, None].expand(5, t.shape[0], 2)[keep]  # (k, 2)
        return t.repeat(5, 1, 1)[keep], offsets
