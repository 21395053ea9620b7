"""Validation curves YOLOv5 writes at the end of training: `PR_curve.png`, `F1_curve.png`, `P_curve.png`, `R_curve.png`.

All are 2250x1500 PNGs (9x6 inches at 250 dpi) with the per-class legend outside the axes on the right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes

from lightning_yolo.evaluation.ap import box_filter
from lightning_yolo.ops.arrays import to_numpy
from lightning_yolo.plots._figure import Names, class_name, new_figure, save_figure

_PER_CLASS_MAX = 20  # per-class lines get a legend entry only up to this many classes; more are drawn grey


def _float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def _finish(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title(title)


def _per_class_lines(ax: Axes, px: np.ndarray, py: np.ndarray, labels: list[str]) -> None:
    """Thin per-class lines, labelled for up to 20 classes and plain grey beyond."""
    if 0 < len(py) <= _PER_CLASS_MAX:
        for y, label in zip(py, labels, strict=True):
            ax.plot(px, y, linewidth=1, label=label)
    elif len(py):
        ax.plot(px, py.T, linewidth=1, color="grey")


def plot_pr_curve(
    px: np.ndarray | torch.Tensor,
    py: np.ndarray | torch.Tensor,
    ap: np.ndarray | torch.Tensor,
    names: Names | None = None,
    save_path: str | Path = "PR_curve.png",
) -> Path:
    """Precision-recall curve at IoU 0.5 per class, and their mean with mAP@0.5 in the legend.

    Args:
        px: (1000,) recall points, usually `np.linspace(0, 1, 1000)`.
        py: (nc, 1000) precision of each class at those recalls (IoU 0.5).
        ap: (nc, 10) AP of each class at IoU 0.5:0.95 (column 0, IoU 0.5, is shown).
        names: class names of the nc rows of py (in row order).
        save_path: output PNG.
    """
    px, py = _float64(px), _float64(py).reshape(-1, len(px))
    ap = _float64(ap).reshape(len(py), -1) if len(py) else np.zeros((0, 10))
    fig, ax = new_figure((9, 6))
    ax = ax[0]
    labels = [f"{class_name(names, i)} {ap[i, 0]:.3f}" for i in range(len(py))]
    _per_class_lines(ax, px, py, labels)
    if len(py):
        ax.plot(px, py.mean(0), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    _finish(ax, "Recall", "Precision", "Precision-Recall Curve")
    return save_figure(fig, save_path, dpi=250)


def plot_mc_curve(
    px: np.ndarray | torch.Tensor,
    py: np.ndarray | torch.Tensor,
    names: Names | None = None,
    save_path: str | Path = "mc_curve.png",
    xlabel: str = "Confidence",
    ylabel: str = "Metric",
) -> Path:
    """A metric (F1, precision or recall) against confidence threshold per class, and the smoothed class mean.

    The legend gives the mean curve's maximum and the confidence where it is reached, e.g.
    "all classes 0.52 at 0.312" on the F1 curve.

    Args:
        px: (1000,) confidence thresholds, usually `np.linspace(0, 1, 1000)`.
        py: (nc, 1000) metric of each class at those thresholds.
        names: class names of the nc rows of py (in row order).
        save_path: output PNG (F1_curve.png, P_curve.png, R_curve.png).
        xlabel, ylabel: axis labels; the title is "<ylabel>-Confidence Curve".
    """
    px, py = _float64(px), _float64(py).reshape(-1, len(px))
    fig, ax = new_figure((9, 6))
    ax = ax[0]
    _per_class_lines(ax, px, py, [class_name(names, i) for i in range(len(py))])
    if len(py):
        y = box_filter(py.mean(0), 0.05)
        best = int(y.argmax())
        ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y[best]:.2f} at {px[best]:.3f}")
    _finish(ax, xlabel, ylabel, f"{ylabel}-Confidence Curve")
    return save_figure(fig, save_path, dpi=250)
