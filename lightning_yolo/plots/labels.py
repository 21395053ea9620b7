"""The dataset label plots YOLOv5 writes before training: `labels.jpg` and `labels_correlogram.jpg`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.axes import Axes

from lightning_yolo.ops.boxes import xywh_to_xyxy
from lightning_yolo.plots._figure import Names, class_color, hide_spines, name_list, new_figure, save_figure

_BINS = 50
# Colour scale saturates where the cells below hold 90 % of the labels: a few dense cells cannot wash out the rest.
_PMAX = 0.9
_CANVAS = 2000  # px side of the box-shape sample
_MAX_BOXES = 1000
_COLUMNS = ("x", "y", "width", "height")


def _saturation(counts: np.ndarray, pmax: float = _PMAX) -> float:
    """Count at which the colour scale saturates: the largest non-empty cell of the smallest set of cells
    (by count, ascending) holding `pmax` of all labels."""
    cells = np.sort(counts[counts > 0].ravel())
    if cells.size == 0:
        return 1.0
    cumulative = np.cumsum(cells) / cells.sum()
    return float(cells[min(np.searchsorted(cumulative, pmax), cells.size - 1)])


def _edges(values: np.ndarray) -> np.ndarray:
    """`_BINS` equal bins over the data's range (the unit interval when there is no data)."""
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if hi <= lo:  # a single value: give it a bin of its own
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, _BINS + 1)


def _hist2d(ax: Axes, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str) -> None:
    """Density of (x, y) pairs as blue cells, empty cells left white."""
    counts, xe, ye = np.histogram2d(x, y, bins=(_edges(x), _edges(y)))
    shown = np.ma.masked_equal(counts.T, 0)  # (ny, nx) rows are y bins for pcolormesh
    ax.pcolormesh(xe, ye, shown, cmap="Blues", vmin=0, vmax=_saturation(counts))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _class_histogram(ax: Axes, cls: np.ndarray, names: list[str]) -> None:
    """Instances per class, bars in the class colours, named on the axis when there are few classes."""
    nc = max(int(cls.max()) + 1 if cls.size else 0, len(names), 1)
    counts = np.bincount(cls.astype(int), minlength=nc)
    colors = [tuple(c / 255 for c in class_color(i)) for i in range(nc)]
    ax.bar(np.arange(nc), counts, width=0.8, color=colors)
    ax.set_ylabel("instances")
    if 0 < len(names) < 30:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=10)
    else:
        ax.set_xlabel("classes")


def _box_sample(cls: np.ndarray, wh: np.ndarray) -> np.ndarray:
    """A white canvas with up to 1000 label boxes drawn centred, in their class colours (RGB image)."""
    canvas = np.full((_CANVAS, _CANVAS, 3), 255, np.uint8)
    centred = np.concatenate([np.full_like(wh, 0.5), wh], 1)[:_MAX_BOXES]  # (k, 4) xywhn centred
    corners = np.round(xywh_to_xyxy(centred) * _CANVAS).astype(int)
    for c, (x1, y1, x2, y2) in zip(cls[:_MAX_BOXES], corners, strict=True):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), class_color(int(c)), thickness=1)
    return canvas


def _labels_figure(cls: np.ndarray, boxes: np.ndarray, names: list[str], path: Path) -> Path:
    fig, ax = new_figure((8, 8), 2, 2)
    _class_histogram(ax[0], cls, names)
    ax[1].imshow(_box_sample(cls, boxes[:, 2:4]))
    ax[1].axis("off")
    _hist2d(ax[2], boxes[:, 0], boxes[:, 1], "x", "y")
    _hist2d(ax[3], boxes[:, 2], boxes[:, 3], "width", "height")
    for a in ax:
        hide_spines(a)
    return save_figure(fig, path, dpi=200)


def _correlogram(boxes: np.ndarray, path: Path) -> Path:
    """Lower-triangle pair plot of x, y, width, height: histograms on the diagonal, 2D densities below it."""
    fig, ax = new_figure((10, 10), 4, 4)
    ax = ax.reshape(4, 4)
    for i in range(4):
        for j in range(4):
            a = ax[i, j]
            if j > i:
                a.axis("off")
            elif i == j:
                a.hist(boxes[:, i], bins=_edges(boxes[:, i]), color="#4c72b0", alpha=0.8)
            else:
                _hist2d(a, boxes[:, j], boxes[:, i], "", "")
            a.set_xlabel(_COLUMNS[j] if i == 3 else "")
            a.set_ylabel(_COLUMNS[i] if j == 0 and i > 0 else "")
            for side in ("top", "right"):
                a.spines[side].set_visible(False)
    return save_figure(fig, path, dpi=200)


def plot_labels(
    labels: np.ndarray | torch.Tensor, names: Names | None = None, save_dir: str | Path = "."
) -> list[Path]:
    """Write YOLOv5's label overview: `labels.jpg` (1600x1600) and `labels_correlogram.jpg` (2000x2000).

    Args:
        labels: (n, 5) all training labels as [cls, x, y, w, h], box normalised to its image; may be empty.
        names: class names by index; named on the class histogram when there are fewer than 30.
        save_dir: folder to write into (created when missing).

    Returns:
        Paths of the two images: [labels.jpg, labels_correlogram.jpg].
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    cls, boxes = labels[:, 0], labels[:, 1:]  # boxes (n, 4) xywhn
    save_dir = Path(save_dir)
    return [
        _labels_figure(cls, boxes, name_list(names), save_dir / "labels.jpg"),
        _correlogram(boxes, save_dir / "labels_correlogram.jpg"),
    ]
