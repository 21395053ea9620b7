"""What a validation run accumulates, as DDP-aware torchmetrics Metrics: detection metrics (P, R, mAP@0.5,
mAP@0.5:0.95, fitness, confusion matrix) and the mean validation losses.

``DetectionMetric`` keeps, per image, what YOLOv5's val.py keeps (true-positive flags, confidences, classes of
detections and labels) in list states gathered with ``cat``, so under DDP each process validates its own shard
and every image counts once in the result. The maths lives in ``ap``, ``matching`` and ``confusion``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_yolo.evaluation.ap import APResult, ap_per_class
from lightning_yolo.evaluation.confusion import confusion_update_image
from lightning_yolo.evaluation.matching import match_predictions

_MEAN_KEYS = ("precision", "recall", "map50", "map", "fitness")
_CLASS_KEYS = ("class_precision", "class_recall", "class_ap50", "class_ap")
_MAX_THRESHOLDS = 24  # true-positive flags are packed into the bits of one float32 (exact up to 2**24)


def _pack(correct: torch.Tensor) -> torch.Tensor:
    """``(n, t)`` bool -> ``(n,)`` float32 holding the flags as bits, so every state is one value per detection."""
    weights = 2 ** torch.arange(correct.shape[1], device=correct.device)
    return (correct.long() * weights).sum(1).float()


def _unpack(packed: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of ``_pack``: ``(n,)`` -> ``(n, t)`` bool."""
    weights = 2 ** torch.arange(t, device=packed.device)
    return (packed.long()[:, None] & weights).bool()


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A list state as one tensor, whether or not it was already gathered; empty if nothing was added."""
    if isinstance(state, list) and not state:
        return torch.zeros(0)
    return dim_zero_cat(state)


class DetectionMetric(Metric):
    """Precision, recall, mAP and fitness of detections against labels, per YOLOv5 val.py.

    ``update`` takes post-NMS detections and labels of a batch, both as ``[x1, y1, x2, y2]`` in the same pixel
    frame (YOLOv5 uses original-image pixels: rescale both with ``ops.boxes.scale_boxes`` first). ``compute``
    returns a dict of tensors:

    - ``precision``, ``recall``, ``map50``, ``map``, ``fitness``: scalars, means over the classes that have labels
      (all 0 when no detection is a true positive, as in val.py);
    - ``seen`` images, ``instances`` labels (scalars);
    - ``class_ids`` ``(k,)`` classes that have labels, and aligned ``class_precision``, ``class_recall``,
      ``class_ap50``, ``class_ap``, ``class_instances``, ``class_images`` (images containing the class);
      empty when no detection is a true positive;
    - ``instances_per_class``, ``images_per_class``, ``maps`` (AP@0.5:0.95, or ``map`` where a class has no
      result), each ``(nc,)``;
    - ``confusion_matrix`` ``(nc + 1, nc + 1)`` ``[predicted, true]`` (background last).

    After ``compute``, ``last_result`` holds the ``APResult`` with the curves for plotting (None when it was not
    computed).

    Args:
        nc: Number of classes.
        iou_thresholds: IoU thresholds of the true-positive flags; default 0.50:0.05:0.95.
        confusion_conf: Confidence threshold of the confusion matrix.
        confusion_iou: IoU threshold of the confusion matrix.
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        nc: int,
        iou_thresholds: Sequence[float] | None = None,
        confusion_conf: float = 0.25,
        confusion_iou: float = 0.45,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        iouv = torch.linspace(0.5, 0.95, 10) if iou_thresholds is None else torch.tensor(iou_thresholds)
        if not 0 < iouv.numel() <= _MAX_THRESHOLDS:
            raise ValueError(f"between 1 and {_MAX_THRESHOLDS} IoU thresholds are supported, got {iouv.numel()}")
        self.nc, self.iouv = nc, iouv.float()
        self.confusion_conf, self.confusion_iou = confusion_conf, confusion_iou
        self.last_result: APResult | None = None
        # one entry per detection: packed true-positive flags, confidence, class
        for name in ("tp", "conf", "pred_cls", "target_cls", "image_cls"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("seen", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("confusion_matrix", torch.zeros(nc + 1, nc + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
        """Add a batch of images.

        Args:
            preds: Per image ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` sorted by confidence (NMS output).
            targets: Per image ``(m, 5)`` ``[cls, x1, y1, x2, y2]``, same frame as ``preds``.
        """
        if len(preds) != len(targets):
            raise ValueError(f"got detections for {len(preds)} images but labels for {len(targets)}")
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("tp", "conf", "pred_cls", "target_cls", "image_cls")}
        for det, lab in zip(preds, targets, strict=True):
            self._add_image(det.detach().to(self.device), lab.detach().to(self.device), parts)
        for name, pieces in parts.items():
            # always one (maybe empty) float tensor per state and update, so processes gather matching dtypes
            getattr(self, name).append(torch.cat(pieces) if pieces else torch.zeros(0, device=self.device))
        self.seen += len(preds)

    def _add_image(self, det: torch.Tensor, lab: torch.Tensor, parts: dict[str, list[torch.Tensor]]) -> None:
        """Collect one image's flags and classes into ``parts``, with val.py's handling of empty images."""
        confusion_update_image(self.confusion_matrix, det, lab, conf=self.confusion_conf, iou_thres=self.confusion_iou)
        if not det.shape[0] and not lab.shape[0]:
            return
        correct = match_predictions(det, lab, self.iouv)  # all False when the image has no labels
        parts["tp"].append(_pack(correct))
        parts["conf"].append(det[:, 4].float())
        parts["pred_cls"].append(det[:, 5].float())
        parts["target_cls"].append(lab[:, 0].float())
        parts["image_cls"].append(lab[:, 0].unique().float())

    def compute(self) -> dict[str, torch.Tensor]:
        """Metrics over every image added (on all processes); see the class docstring for the keys."""
        tp = _unpack(_cat(self.tp), self.iouv.numel())
        conf, pred_cls, target_cls = _cat(self.conf), _cat(self.pred_cls), _cat(self.target_cls)
        instances = torch.bincount(target_cls.long().cpu(), minlength=self.nc)
        images = torch.bincount(_cat(self.image_cls).long().cpu(), minlength=self.nc)
        self.last_result = ap_per_class(tp, conf, pred_cls, target_cls) if tp.any() else None
        out = self._summary(self.last_result, instances, images)
        out["seen"] = self.seen.clone()
        out["confusion_matrix"] = self.confusion_matrix.clone()
        return {k: v.to(self.device) for k, v in out.items()}

    def _summary(self, res: APResult | None, instances: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Means and per-class arrays from an ``APResult``; zeros and empty arrays when there is none."""
        ids = torch.as_tensor(res.unique_classes if res is not None else [], dtype=torch.long)
        per_class = (res.p, res.r, res.ap50, res.ap_mean) if res is not None else ([],) * 4
        means = (res.mp, res.mr, res.map50, res.map, res.fitness) if res is not None else (0.0,) * 5
        out = {k: torch.tensor(v, dtype=torch.float32) for k, v in zip(_MEAN_KEYS, means, strict=True)}
        out |= {k: torch.as_tensor(v, dtype=torch.float32) for k, v in zip(_CLASS_KEYS, per_class, strict=True)}
        maps = torch.full((len(instances),), float(out["map"]))  # classes without a result get the overall mAP
        maps[ids] = out["class_ap"]
        out.update(
            instances=instances.sum(),
            class_ids=ids,
            class_instances=instances[ids],
            class_images=images[ids],
            instances_per_class=instances,
            images_per_class=images,
            maps=maps,
        )
        return out


class BatchMean(Metric):
    """Mean over batches of a per-batch vector (YOLOv5's validation losses: sum of batch losses / batches).

    The sums are reduced over ranks when computed, so a rank that ran more batches weighs in correctly and the
    result equals the single-process value (up to floating-point summation order).
    """

    full_state_update = False

    def __init__(self, size: int) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor) -> None:
        """Add one batch's vector ``(size,)``."""
        self.total += value.detach().to(self.total)
        self.batches += 1

    def compute(self) -> torch.Tensor:
        """``(size,)`` float32 mean; zeros when no batch was added anywhere."""
        return (self.total / self.batches.clamp(min=1)).float()
