"""``evolve.png``: one panel per hyperparameter, its value against fitness for every trial, the best marked with a
cross and named in the panel's title (YOLOv5's ``plot_evolve``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_yolo.plots._figure import new_figure, save_figure
from lightning_yolo.tune.results import TrialRecord, best_index
from lightning_yolo.tune.space import SearchSpace

COLUMNS = 5


def plot_evolve(records: Sequence[TrialRecord], space: SearchSpace, path: Path) -> Path | None:
    """Draw the panels into ``path`` (nothing without records); returns the path written."""
    if not records:
        return None
    rows = math.ceil(len(space.keys) / COLUMNS)
    fig, axes = new_figure((10, 2 * rows), nrows=rows, ncols=COLUMNS)
    fit = np.array([r.fitness for r in records])
    j = best_index(records)
    for i, ax in enumerate(axes):
        if i >= len(space.keys):
            ax.set_axis_off()
            continue
        key = space.keys[i]
        values = np.array([r.hyp[key] for r in records])
        ax.scatter(values, fit, c=fit, cmap="viridis", alpha=0.8, edgecolors="none")
        ax.plot(values[j], fit[j], "k+", markersize=15)
        ax.set_title(f"{key} = {values[j]:.3g}", fontsize=9)
        ax.tick_params(labelsize=7)
        if i % COLUMNS:
            ax.set_yticks([])
    return save_figure(fig, path, dpi=200)
