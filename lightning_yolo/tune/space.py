"""The hyperparameters that evolution searches: YOLOv5's ``train.py --evolve`` table of mutation gain, lower and
upper limit per key, restricted to the keys that are lightning_yolo settings.

YOLOv5's ``iou_t`` (unused by its loss) and ``anchors`` (anchors per output, not a setting here) are left out. A key
with gain 0 (``fl_gamma``, ``perspective``, ``fliplr``) is never mutated by the genetic algorithm but is still a
column of ``evolve.csv``, as in YOLOv5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightning_yolo.errors import ConfigError


@dataclass(frozen=True)
class Gene:
    """One searched setting: the fit section it belongs to, YOLOv5's mutation gain (0-1; 0 = fixed) and limits."""

    section: str
    gain: float
    lower: float
    upper: float


YOLOV5_META: dict[str, Gene] = {
    "lr0": Gene("model", 1, 1e-5, 1e-1),
    "lrf": Gene("model", 1, 0.01, 1.0),
    "momentum": Gene("model", 0.3, 0.6, 0.98),
    "weight_decay": Gene("model", 1, 0.0, 0.001),
    "warmup_epochs": Gene("model", 1, 0.0, 5.0),
    "warmup_momentum": Gene("model", 1, 0.0, 0.95),
    "warmup_bias_lr": Gene("model", 1, 0.0, 0.2),
    "box": Gene("model", 1, 0.02, 0.2),
    "cls": Gene("model", 1, 0.2, 4.0),
    "cls_pw": Gene("model", 1, 0.5, 2.0),
    "obj": Gene("model", 1, 0.2, 4.0),
    "obj_pw": Gene("model", 1, 0.5, 2.0),
    "anchor_t": Gene("model", 1, 2.0, 8.0),
    "fl_gamma": Gene("model", 0, 0.0, 2.0),
    "hsv_h": Gene("data", 1, 0.0, 0.1),
    "hsv_s": Gene("data", 1, 0.0, 0.9),
    "hsv_v": Gene("data", 1, 0.0, 0.9),
    "degrees": Gene("data", 1, 0.0, 45.0),
    "translate": Gene("data", 1, 0.0, 0.9),
    "scale": Gene("data", 1, 0.0, 0.9),
    "shear": Gene("data", 1, 0.0, 10.0),
    "perspective": Gene("data", 0, 0.0, 0.001),
    "flipud": Gene("data", 1, 0.0, 1.0),
    "fliplr": Gene("data", 0, 0.0, 1.0),
    "mosaic": Gene("data", 1, 0.0, 1.0),
    "mixup": Gene("data", 1, 0.0, 1.0),
    "copy_paste": Gene("data", 1, 0.0, 1.0),
}
"""YOLOv5 v7.0 ``train.py``'s evolution metadata for the keys lightning_yolo has, in YOLOv5's hyp order."""


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys in order, and per key its gain and limits as arrays aligned with ``keys``."""

    keys: tuple[str, ...]
    genes: tuple[Gene, ...]

    @property
    def gains(self) -> np.ndarray:
        return np.array([g.gain for g in self.genes], dtype=float)

    @property
    def lower(self) -> np.ndarray:
        return np.array([g.lower for g in self.genes], dtype=float)

    @property
    def upper(self) -> np.ndarray:
        return np.array([g.upper for g in self.genes], dtype=float)

    @property
    def mutable(self) -> tuple[str, ...]:
        """The keys with a non-zero gain: those the searchers change."""
        return tuple(k for k, g in zip(self.keys, self.genes, strict=True) if g.gain > 0)

    def vector(self, hyp: Mapping[str, float]) -> np.ndarray:
        """``hyp`` as an array in the order of ``keys``."""
        return np.array([float(hyp[k]) for k in self.keys], dtype=float)

    def as_dict(self, values: Sequence[float]) -> dict[str, float]:
        """An array in the order of ``keys`` as ``{key: value}`` of plain floats."""
        return {k: float(v) for k, v in zip(self.keys, values, strict=True)}

    def sections(self, hyp: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """``hyp`` split into the fit config's sections: ``{"model": {...}, "data": {...}}``."""
        out: dict[str, dict[str, float]] = {}
        for key, gene in zip(self.keys, self.genes, strict=True):
            if key in hyp:
                out.setdefault(gene.section, {})[key] = float(hyp[key])
        return out


def search_space(keys: Sequence[str] | None = None) -> SearchSpace:
    """The space over ``keys`` (default: every key of :data:`YOLOV5_META`), kept in YOLOv5's order.

    Raises:
        ConfigError: A key that is not a searchable setting.
    """
    wanted = list(YOLOV5_META) if not keys else list(dict.fromkeys(keys))
    unknown = [k for k in wanted if k not in YOLOV5_META]
    if unknown:
        raise ConfigError(
            f"tune.keys: {', '.join(unknown)} cannot be searched; searchable keys: {', '.join(YOLOV5_META)}"
        )
    ordered = tuple(k for k in YOLOV5_META if k in wanted)
    return SearchSpace(ordered, tuple(YOLOV5_META[k] for k in ordered))


def base_hyp(space: SearchSpace, fit_config: Mapping[str, Any]) -> dict[str, float]:
    """The fit config's values of the searched keys (``fit_config["model"]["lr0"]``, ...): evolution's start.

    Raises:
        ConfigError: A searched key that the fit config does not hold as a number.
    """
    hyp = {}
    for key, gene in zip(space.keys, space.genes, strict=True):
        value = (fit_config.get(gene.section) or {}).get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{gene.section}.{key}: expected a number to start evolution from, got {value!r}")
        hyp[key] = float(value)
    return hyp
