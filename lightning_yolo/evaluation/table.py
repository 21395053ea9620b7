"""YOLOv5 val.py's results table: all classes, then each class with its images, instances, P, R and mAPs.

:func:`results_rows` gives the rows as values (the W&B per-class table logs them); :func:`format_results_table`
prints them as val.py does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

HEADER = ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")

_CLASS_COLUMNS = ("class_images", "class_instances", "class_precision", "class_recall", "class_ap50", "class_ap")


def results_rows(
    results: Mapping[str, torch.Tensor], names: Sequence[str] | None, per_class: bool = True
) -> list[list[Any]]:
    """Rows ``[class, images, instances, P, R, mAP50, mAP50-95]``: ``all`` first, then each class that has labels.

    Args:
        results: the dict from ``DetectionMetric.compute()``.
        names: class names indexed by class id; a class id without a name is shown as its number.
        per_class: add the per-class rows after the ``all`` row.
    """
    means = [float(results[k]) for k in ("precision", "recall", "map50", "map")]
    rows: list[list[Any]] = [["all", int(results["seen"]), int(results["instances"]), *means]]
    if not per_class:
        return rows
    ids = results.get("class_ids", torch.zeros(0)).tolist()
    values = [results[c].tolist() for c in _CLASS_COLUMNS]
    for i, cls in enumerate(ids):
        cls = int(cls)
        name = names[cls] if names is not None and cls < len(names) else str(cls)
        rows.append([name, int(values[0][i]), int(values[1][i]), *(float(v[i]) for v in values[2:])])
    return rows


def format_results_table(results: Mapping[str, torch.Tensor], names: Sequence[str], per_class: bool = True) -> str:
    """The rows of :func:`results_rows` as YOLOv5 val.py prints them (3 significant digits, right-aligned)."""
    lines = ["".join(f"{h:>22}" if i == 0 else f"{h:>11}" for i, h in enumerate(HEADER))]
    for name, images, instances, p, r, ap50, ap in results_rows(results, names, per_class):
        lines.append(f"{name:>22}{images:>11}{instances:>11}{p:>11.3g}{r:>11.3g}{ap50:>11.3g}{ap:>11.3g}")
    return "\n".join(lines)
