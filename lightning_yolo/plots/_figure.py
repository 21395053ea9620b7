"""Figures that never touch matplotlib's global state, and the class colour palette shared by every plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Names = Sequence[str] | Mapping[int, str]

# YOLOv5's 20-colour class palette (RGB), so class colours match what YOLOv5 users know.
_PALETTE_HEX = (
    "FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
    "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7",
)  # fmt: skip
PALETTE: tuple[tuple[int, int, int], ...] = tuple(tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in _PALETTE_HEX)


def class_color(cls: int, bgr: bool = False) -> tuple[int, int, int]:
    """The palette colour of a class index as 0-255 integers, RGB or (for cv2 drawing) BGR."""
    r, g, b = PALETTE[int(cls) % len(PALETTE)]
    return (b, g, r) if bgr else (r, g, b)


def class_name(names: Names | None, cls: int) -> str:
    """A class's name, or its index as text when names are missing or too short."""
    if names is None:
        return str(cls)
    if isinstance(names, Mapping):
        return str(names.get(cls, cls))
    return str(names[cls]) if 0 <= cls < len(names) else str(cls)


def name_list(names: Names | None) -> list[str]:
    """Names as a list ordered by class index (a mapping's keys are taken as 0..n-1)."""
    if names is None:
        return []
    if isinstance(names, Mapping):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    """A figure with its own Agg canvas (no pyplot, no backend switch) and its axes as a flat array."""
    fig = Figure(figsize=figsize, tight_layout=True)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    return fig, axes


def save_figure(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Write a figure (format from the suffix), creating the folder; the figure is released afterwards."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    fig.clear()
    return path


def hide_spines(ax: Axes) -> None:
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
