"""YOLOv5 val.py's results table: all classes, then each class with its images, instances, P, R and mAPs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

HEADER = ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")


def _row(name: str, images: int, instances: int, p: float, r: float, ap50: float, ap: float) -> str:
    return f"{name:>22}{images:>11}{instances:>11}{p:>11.3g}{r:>11.3g}{ap50:>11.3g}{ap:>11.3g}"


def format_results_table(results: Mapping[str, torch.Tensor], names: Sequence[str], per_class: bool = True) -> str:
    """Render the metric results of `DetectionMetric.compute` as YOLOv5 val.py prints them.

    Args:
        results: the dict from ``DetectionMetric.compute()``.
        names: class names indexed by class id.
        per_class: add one row per class that has labels or predictions after the ``all`` row.
    """
    lines = ["".join(f"{h:>22}" if i == 0 else f"{h:>11}" for i, h in enumerate(HEADER))]
    lines.append(
        _row(
            "all",
            int(results["seen"]),
            int(results["instances"]),
            float(results["precision"]),
            float(results["recall"]),
            float(results["map50"]),
            float(results["map"]),
        )
    )
    if not per_class:
        return "\n".join(lines)
    columns = ("class_ids", "class_images", "class_instances", "class_precision", "class_recall", "class_ap50")
    rows = zip(*(results[c].tolist() for c in columns), results["class_ap"].tolist(), strict=True)
    for cid, images, instances, p, r, ap50, ap in rows:
        cid = int(cid)
        name = names[cid] if cid < len(names) else str(cid)
        lines.append(_row(name, int(images), int(instances), p, r, ap50, ap))
    return "\n".join(lines)
