"""Detections as YOLO label files (YOLOv5's ``--save-txt`` / ``--save-conf``): one ``<stem>.txt`` per image, a
row ``cls x y w h [conf]`` per detection, the box normalised to the original image, numbers as ``%g``."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_yolo.ops.boxes import xyxy_to_xywh

__all__ = ["detections_to_label_lines", "write_label_file"]


def detections_to_label_lines(detections: torch.Tensor, shape_hw: tuple[int, int], save_conf: bool) -> list[str]:
    """YOLO label rows of one image's detections.

    Args:
        detections: ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` in original-image pixels.
        shape_hw: The original image's ``(height, width)``.
        save_conf: Append the confidence to each row.

    Returns:
        ``n`` lines ``cls x y w h`` (``cls x y w h conf`` with ``save_conf``), without newlines.
    """
    det = detections.detach().float().cpu()
    h, w = shape_hw
    xywhn = xyxy_to_xywh(det[:, :4]) / torch.tensor([w, h, w, h], dtype=torch.float32)  # (n, 4) normalised
    lines = []
    for box, conf, cls in zip(xywhn.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True):
        row = (cls, *box, conf) if save_conf else (cls, *box)
        lines.append(" ".join(f"{v:g}" for v in row))
    return lines


def write_label_file(path: Path, detections: torch.Tensor, shape_hw: tuple[int, int], save_conf: bool) -> Path:
    """Write one image's detections to ``path`` (replacing it) as YOLO label rows; returns ``path``."""
    lines = detections_to_label_lines(detections, shape_hw, save_conf)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
