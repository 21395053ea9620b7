"""Average precision per class (COCO-style 101-point interpolation), P and R at the best mean F1, and fitness.

Plain functions over tensors and NumPy arrays; :mod:`lightning_yolo.evaluation.metric` accumulates their inputs
over a validation run (and across processes) and calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lightning_yolo.ops.arrays import to_numpy

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # renamed in numpy 2.0

N_CURVE_POINTS = 1000  # resolution of the confidence axis of the P, R, F1 curves


def fitness(map50: float | np.ndarray | torch.Tensor, map: float | np.ndarray | torch.Tensor):
    """Model selection score: ``0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95`` (works on floats, arrays and tensors)."""
    return 0.1 * map50 + 0.9 * map


def box_filter(y: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Moving average over an odd window of about ``2 * fraction * len(y)`` points, edges padded with end values."""
    width = round(len(y) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    padded = np.concatenate((pad * y[0], y, pad * y[-1]))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Area under the precision envelope, sampled at 101 recall points (COCO).

    Args:
        recall: Recall after each detection, by decreasing confidence.
        precision: Precision after each detection.

    Returns:
        AP, and the envelope's precision and recall (with sentinels at recall 0 and 1) for plotting.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # make precision non-increasing in recall
    x = np.linspace(0, 1, 101)
    return float(_trapezoid(np.interp(x, mrec, mpre), x)), mpre, mrec


@dataclass
class APResult:
    """Output of ``ap_per_class``; per-class arrays follow ``unique_classes`` (classes that have labels).

    Attributes:
        tp: ``(k,)`` true positives at the max-F1 confidence (``round(r * labels)``).
        fp: ``(k,)`` false positives at the max-F1 confidence.
        p: ``(k,)`` precision at the max-F1 confidence.
        r: ``(k,)`` recall at the max-F1 confidence.
        f1: ``(k,)`` F1 at the max-F1 confidence.
        ap: ``(k, t)`` AP at each IoU threshold.
        unique_classes: ``(k,)`` int class ids.
        n_labels: ``(k,)`` labels per class.
        px: ``(1000,)`` confidence (and recall) axis of the curves.
        p_curve: ``(k, 1000)`` precision against confidence.
        r_curve: ``(k, 1000)`` recall against confidence.
        f1_curve: ``(k, 1000)`` F1 against confidence.
        pr_curve: ``(k, 1000)`` precision against recall (``px``) at the first IoU threshold; zeros for classes
            without predictions.
        best_index: Index into ``px`` of the confidence where the smoothed mean F1 peaks.
    """

    tp: np.ndarray
    fp: np.ndarray
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    ap: np.ndarray
    unique_classes: np.ndarray
    n_labels: np.ndarray
    px: np.ndarray
    p_curve: np.ndarray
    r_curve: np.ndarray
    f1_curve: np.ndarray
    pr_curve: np.ndarray
    best_index: int

    @property
    def ap50(self) -> np.ndarray:
        """``(k,)`` AP at the first IoU threshold (0.5)."""
        return self.ap[:, 0]

    @property
    def ap_mean(self) -> np.ndarray:
        """``(k,)`` AP averaged over the IoU thresholds (AP@0.5:0.95)."""
        return self.ap.mean(1)

    @property
    def mp(self) -> float:
        """Mean precision over classes."""
        return float(self.p.mean()) if self.p.size else 0.0

    @property
    def mr(self) -> float:
        """Mean recall over classes."""
        return float(self.r.mean()) if self.r.size else 0.0

    @property
    def map50(self) -> float:
        """mAP@0.5."""
        return float(self.ap50.mean()) if self.ap.size else 0.0

    @property
    def map(self) -> float:
        """mAP@0.5:0.95."""
        return float(self.ap.mean()) if self.ap.size else 0.0

    @property
    def fitness(self) -> float:
        """``0.1 * map50 + 0.9 * map``."""
        return fitness(self.map50, self.map)


def _class_curves(
    tp: np.ndarray, conf: np.ndarray, n_labels: int, px: np.ndarray, eps: float
) -> tuple[np.ndarray, ...]:
    """Curves of one class from its detections ``tp (d, t)`` sorted by decreasing ``conf (d,)``.

    Returns AP ``(t,)``, precision and recall against confidence ``(len(px),)``, and precision against recall at
    the first threshold ``(len(px),)``.
    """
    tpc = tp.cumsum(0)
    fpc = (1 - tp).cumsum(0)
    recall = tpc / (n_labels + eps)  # (d, t)
    precision = tpc / (tpc + fpc)  # (d, t)
    # np.interp wants increasing x, confidence decreases: negate both axes
    r_curve = np.interp(-px, -conf, recall[:, 0], left=0)
    p_curve = np.interp(-px, -conf, precision[:, 0], left=1)
    ap = np.zeros(tp.shape[1])
    for j in range(tp.shape[1]):
        ap[j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
        if j == 0:
            pr_curve = np.interp(px, mrec, mpre)
    return ap, p_curve, r_curve, pr_curve


def ap_per_class(
    tp: np.ndarray | torch.Tensor,
    conf: np.ndarray | torch.Tensor,
    pred_cls: np.ndarray | torch.Tensor,
    target_cls: np.ndarray | torch.Tensor,
    eps: float = 1e-16,
) -> APResult:
    """Average precision per class and precision / recall at the best mean-F1 confidence.

    Args:
        tp: ``(n, t)`` bool, whether each detection is a true positive at each IoU threshold.
        conf: ``(n,)`` detection confidences.
        pred_cls: ``(n,)`` detection classes.
        target_cls: ``(m,)`` label classes of the whole dataset; only classes that occur here are reported.
        eps: Guards divisions.

    Returns:
        An ``APResult`` (per-class values, curves for plotting, and the means).
    """
    tp, conf, pred_cls, target_cls = (to_numpy(x) for x in (tp, conf, pred_cls, target_cls))
    tp = tp.reshape(tp.shape[0], -1).astype(np.float64)
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, n_labels = np.unique(target_cls, return_counts=True)
    nc, px = classes.shape[0], np.linspace(0, 1, N_CURVE_POINTS)
    ap = np.zeros((nc, tp.shape[1]))
    p_curve, r_curve, pr_curve = (np.zeros((nc, N_CURVE_POINTS)) for _ in range(3))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        if mine.any():
            ap[ci], p_curve[ci], r_curve[ci], pr_curve[ci] = _class_curves(tp[mine], conf[mine], n_labels[ci], px, eps)

    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = int(box_filter(f1_curve.mean(0), 0.1).argmax()) if nc else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_best = (r * n_labels).round()
    fp_best = (tp_best / (p + eps) - tp_best).round()
    return APResult(
        tp_best, fp_best, p, r, f1, ap, classes.astype(int), n_labels, px, p_curve, r_curve, f1_curve, pr_curve, best
    )
