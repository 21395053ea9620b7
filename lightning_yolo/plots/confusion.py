"""YOLOv5's `confusion_matrix.png`: classes plus background, columns normalised to the true class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes

from lightning_yolo.plots._figure import Names, name_list, new_figure, save_figure

_HIDE_BELOW = 0.005  # cells that would print as 0.00 are left blank


def _normalised(matrix: np.ndarray, normalize: bool) -> np.ndarray:
    """Column-normalised copy (each true class sums to 1) with near-zero cells set to NaN so they stay blank."""
    array = matrix / (matrix.sum(0, keepdims=True) + 1e-9) if normalize else matrix.copy()
    array[array < _HIDE_BELOW] = np.nan
    return array


def _annotate(ax: Axes, array: np.ndarray, fmt: str) -> None:
    """Write each non-blank value in its cell, white on dark cells."""
    top = np.nanmax(array) if np.isfinite(array).any() else 1.0
    for (row, col), value in np.ndenumerate(array):
        if np.isfinite(value):
            color = "white" if value > 0.5 * top else "black"
            ax.text(col, row, format(value, fmt), ha="center", va="center", fontsize=8, color=color)


def plot_confusion_matrix(
    matrix: np.ndarray | torch.Tensor,
    names: Names | None = None,
    save_path: str | Path = "confusion_matrix.png",
    normalize: bool = True,
) -> Path:
    """Heat map of a detection confusion matrix, 3000x2250 px (12x9 inches at 250 dpi).

    Args:
        matrix: (nc + 1, nc + 1) counts, rows = predicted class, columns = true class; the last row and column are
            background (a missed label is counted in the background row, a false detection in the background column).
        names: the nc class names; the axes are named (with "background" last) when 0 < nc < 99 and all names
            are given, numbered otherwise.
        save_path: output image.
        normalize: divide each column by its total, as YOLOv5 does.
    """
    matrix = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    matrix = matrix.astype(np.float64)
    nc = len(matrix) - 1
    array = _normalised(matrix, normalize)
    fig, ax = new_figure((12, 9))
    ax = ax[0]
    blues = colormaps["Blues"].with_extremes(bad="white")  # blank (NaN) cells white
    image = ax.imshow(array, cmap=blues, vmin=0.0, interpolation="nearest")
    fig.colorbar(image, ax=ax)
    if nc < 30:
        _annotate(ax, array, ".2f" if normalize else ".0f")
    labels = name_list(names)
    if 0 < len(labels) < 99 and len(labels) == nc:
        ticks = [*labels, "background"]
        ax.set_xticks(range(nc + 1), ticks, rotation=90, fontsize=10 if nc < 50 else 8)
        ax.set_yticks(range(nc + 1), ticks, fontsize=10 if nc < 50 else 8)
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix")
    return save_figure(fig, save_path, dpi=250)
