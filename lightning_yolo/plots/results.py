"""`results.png`: the training history of `results.csv` in YOLOv5's 2x5 layout."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from lightning_yolo.plots._figure import new_figure, save_figure

RESULT_COLUMNS = (
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
)
"""The ten panels, in YOLOv5's order (losses and P/R on the top row, validation losses and mAP below)."""


def _parse(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_results_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a results CSV as float arrays (names stripped of padding; blank or non-numeric cells NaN)."""
    with Path(path).open(newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        rows = [row + [""] * (len(header) - len(row)) for row in reader if row]
    return {name: np.array([_parse(row[i].strip()) for row in rows], np.float64) for i, name in enumerate(header)}


def gaussian_smooth(y: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """1-D Gaussian smoothing truncated at 4 sigma with mirrored edges (as scipy's gaussian_filter1d)."""
    radius = int(4 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    padded = np.pad(y, radius, mode="symmetric")
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def plot_results(csv_path: str | Path, save_path: str | Path | None = None) -> Path:
    """Draw each YOLOv5 result column against the epoch, with a smoothed dotted line, 2400x1200 px.

    Columns may be missing (their panel stays empty but titled) or have blank cells (those points are skipped).
    The x axis is the `epoch` column when present, else the row number.

    Args:
        csv_path: a results.csv with a header row.
        save_path: output image; `results.png` beside the CSV by default.
    """
    csv_path = Path(csv_path)
    data = read_results_csv(csv_path)
    n_rows = len(next(iter(data.values()), []))
    x_all = data.get("epoch", np.arange(n_rows, dtype=np.float64))
    fig, ax = new_figure((12, 6), 2, 5)
    for a, column in zip(ax, RESULT_COLUMNS, strict=True):
        a.set_title(column, fontsize=12)
        y = data.get(column)
        if y is None:
            continue
        keep = np.isfinite(y) & np.isfinite(x_all)
        x, y = x_all[keep], y[keep]
        a.plot(x, y, marker=".", label=csv_path.stem, linewidth=2, markersize=8)
        if len(y):
            a.plot(x, gaussian_smooth(y), ":", label="smooth", linewidth=2)
    if ax[1].get_legend_handles_labels()[0]:
        ax[1].legend()
    return save_figure(fig, save_path or csv_path.with_name("results.png"), dpi=200)
