"""YOLOv5's ``--save-hybrid``: ground-truth labels added to the detector's predictions before NMS, so that the
output (and the label files written from it) is labels + predictions, as YOLOv5's ``non_max_suppression(labels=)``.

Each label becomes a prediction row with objectness 1 and a one-hot class, so it survives any confidence threshold
below 1 and, scoring 1, wins NMS against the predictions that overlap it. Metrics computed from such output measure
the labels as much as the model (mAP near 1): it is an auto-labelling aid, not an evaluation.
"""

from __future__ import annotations

import torch

__all__ = ["append_label_rows"]


def append_label_rows(prediction: torch.Tensor, targets: torch.Tensor, shape_hw: tuple[int, int]) -> torch.Tensor:
    """Append each image's labels to its prediction rows.

    Args:
        prediction: ``(bs, N, 5 + nc)`` decoded rows ``[x, y, w, h, obj, class probabilities...]`` in input pixels.
        targets: ``(n, 6)`` ``[image, cls, x, y, w, h]`` with boxes normalised to the ``shape_hw`` input.
        shape_hw: ``(height, width)`` of the input batch.

    Returns:
        ``(bs, N + m, 5 + nc)``, ``m`` the most labels of any image; images with fewer get all-zero rows, which
        no threshold keeps (objectness 0).
    """
    bs, _, no = prediction.shape
    image = targets[:, 0].long()
    counts = torch.bincount(image, minlength=bs) if len(targets) else torch.zeros(bs, dtype=torch.long)
    rows = prediction.new_zeros(bs, int(counts.max()) if bs else 0, no)  # (bs, m, 5 + nc)
    h, w = shape_hw
    gain = torch.tensor([w, h, w, h], device=targets.device, dtype=targets.dtype)
    for i in range(bs):
        t = targets[image == i]
        k = torch.arange(len(t), device=rows.device)
        rows[i, k, :4] = (t[:, 2:6] * gain).to(rows)
        rows[i, k, 4] = 1.0
        rows[i, k, 5 + t[:, 1].long().to(rows.device)] = 1.0
    return torch.cat((prediction, rows), 1)
