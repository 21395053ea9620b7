"""The JSON answer for one picture."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["detections_json"]


def detections_json(det: torch.Tensor, names: list[str], shape: tuple[int, ...]) -> dict[str, Any]:
    """The answer for one picture: its size and its detections, highest confidence first (``predict``'s order).

    Args:
        det: ``(n, 6)`` rows ``[x1, y1, x2, y2, conf, cls]`` in the picture's pixels (what the predictor returns).
        names: class names, index = class id.
        shape: the picture's ``(H, W, ...)``.

    Returns:
        ``{"width": W, "height": H, "detections": [{"class": id, "name": ..., "confidence": ..., "box": [x1, y1,
        x2, y2]}, ...]}``, boxes in the picture's pixels.
    """
    detections = []
    for *box, conf, cls in det.tolist():
        c = int(cls)
        detections.append(
            {"class": c, "name": names[c] if 0 <= c < len(names) else str(c), "confidence": conf, "box": box}
        )
    return {"width": int(shape[1]), "height": int(shape[0]), "detections": detections}
