"""Batch mosaics with boxes: YOLOv5's `train_batch*.jpg`, `val_batch*_labels.jpg` and `val_batch*_pred.jpg`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from lightning_yolo.ops.arrays import to_numpy
from lightning_yolo.ops.boxes import xywh_to_xyxy, xyxy_to_xywh
from lightning_yolo.plots._figure import Names, class_color, class_name

_FILENAME_COLOR = (220, 220, 220)
_TEXT_COLOR = (255, 255, 255)


def _targets_array(targets: np.ndarray | torch.Tensor | None) -> np.ndarray:
    """(n, 6|7) float array of boxes; None and empty inputs of any shape become (0, 6)."""
    t = np.zeros((0, 6)) if targets is None else to_numpy(targets).astype(np.float64)
    return t.reshape(-1, t.shape[-1]) if t.size else np.zeros((0, 6))


def _as_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 images; float images whose first image lies in [0, 1] are taken as normalised and scaled by 255."""
    if images.dtype == np.uint8:
        return images
    images = images.astype(np.float32)
    if images[0].max() <= 1:
        images = images * 255
    return images.clip(0, 255).astype(np.uint8)


def _tile_origin(i: int, grid: int, w: int, h: int) -> tuple[int, int]:
    """Top-left corner of tile i; tiles fill the grid column by column, as in YOLOv5."""
    return w * (i // grid), h * (i % grid)


def _build_mosaic(images: np.ndarray, grid: int) -> np.ndarray:
    """(grid*H, grid*W, 3) RGB mosaic of (B, 3, H, W) images on white."""
    _, _, h, w = images.shape
    mosaic = np.full((grid * h, grid * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        x, y = _tile_origin(i, grid, w, h)
        mosaic[y : y + h, x : x + w] = im.transpose(1, 2, 0)  # (H, W, 3)
    return mosaic


def draw_box(img: np.ndarray, box: Sequence[float], label: str, color: tuple, lw: int) -> None:
    """A box ``[x1, y1, x2, y2]`` with its label on a filled tag above it (inside the box when the top edge has no
    room, and shifted left to stay inside the picture at its right edge); no tag when ``label`` is empty. In place.
    """
    p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
    cv2.rectangle(img, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
    if not label:
        return
    thickness = max(lw - 1, 1)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, lw / 3, thickness)
    outside = p1[1] - th - 3 >= 0
    p1 = (max(min(p1[0], img.shape[1] - tw), 0), p1[1])
    tag_end = (p1[0] + tw, p1[1] - th - 3 if outside else p1[1] + th + 3)
    cv2.rectangle(img, p1, tag_end, color, -1, cv2.LINE_AA)
    text_y = p1[1] - 2 if outside else p1[1] + th + 2
    cv2.putText(img, label, (p1[0], text_y), cv2.FONT_HERSHEY_SIMPLEX, lw / 3, _TEXT_COLOR, thickness, cv2.LINE_AA)


def _draw_text(img: np.ndarray, text: str, top_left: tuple[int, int], color: tuple, lw: int) -> None:
    thickness = max(lw - 1, 1)
    (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, lw / 3, thickness)
    org = (top_left[0], top_left[1] + th)  # cv2 places text by its baseline
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, lw / 3, color, thickness, cv2.LINE_AA)


def _tile_boxes(rows: np.ndarray, w: int, h: int, scale: float, origin: tuple[int, int]) -> np.ndarray:
    """(k, 4) xyxy mosaic pixels of one tile's [x, y, w, h] rows (normalised, or pixels of the unscaled image)."""
    boxes = xywh_to_xyxy(rows.astype(np.float64))
    if boxes.size and boxes.max() <= 1.01:  # normalised, with YOLOv5's tolerance
        boxes *= np.array([w, h, w, h])
    elif scale < 1:
        boxes *= scale
    return boxes + np.array([*origin, *origin])


def _annotate_tile(mosaic: np.ndarray, tile_targets: np.ndarray, names: Names | None, box_args: tuple, lw: int) -> None:
    """Draw one tile's labels (6 columns) or predictions (7 columns, only those above 0.25 confidence)."""
    boxes = _tile_boxes(tile_targets[:, 2:6], *box_args)
    is_pred = tile_targets.shape[1] > 6
    for row, box in zip(tile_targets, boxes, strict=True):
        cls = int(row[1])
        if is_pred and row[6] <= 0.25:
            continue
        label = f"{class_name(names, cls)} {row[6]:.1f}" if is_pred else class_name(names, cls)
        draw_box(mosaic, box, label, class_color(cls), lw)


def predictions_to_targets(predictions: Sequence[torch.Tensor | np.ndarray], max_det: int = 300) -> np.ndarray:
    """NMS output of a batch as `plot_images` targets.

    Args:
        predictions: per image, (n, 6) [x1, y1, x2, y2, conf, cls] in pixels of the batch image.
        max_det: most detections kept per image (the first ones, i.e. the most confident after NMS).

    Returns:
        (N, 7) float32 [image index, cls, x, y, w, h, conf], boxes in pixels.
    """
    rows = []
    for i, pred in enumerate(predictions):
        pred = to_numpy(pred).astype(np.float32).reshape(-1, 6)[:max_det]
        index = np.full((len(pred), 1), i, np.float32)
        rows.append(np.concatenate([index, pred[:, 5:6], xyxy_to_xywh(pred[:, :4]), pred[:, 4:5]], 1))
    return np.concatenate(rows) if rows else np.zeros((0, 7), np.float32)


def plot_images(
    images: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor | None = None,
    paths: Sequence[str | Path] | None = None,
    names: Names | None = None,
    fname: str | Path = "images.jpg",
    max_size: int = 1920,
    max_subplots: int = 16,
) -> Path:
    """Write a square mosaic of a batch with its boxes and class names (and confidences for predictions).

    Args:
        images: (B, 3, H, W) RGB, uint8 or float (floats in [0, 1] are scaled by 255). B must be at least 1;
            only the first `max_subplots` images are drawn.
        targets: (n, 6) labels [image index, cls, x, y, w, h] or (n, 7) predictions with a trailing confidence;
            boxes normalised to the image, or in pixels of the (H, W) image. None or empty for no boxes.
        paths: image file paths; their names (first 40 characters) are written on each tile.
        names: class names by index; indices are shown where missing.
        fname: output file (suffix decides the format); its folder is created.
        max_size: the mosaic is shrunk so one tile's long side is at most max_size / tiles per row.
        max_subplots: most images drawn (16 gives a 4x4 grid).

    Returns:
        The written path. The mosaic is ceil(sqrt(b)) tiles a side, b = min(B, max_subplots).
    """
    images = _as_uint8(to_numpy(images))
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected a non-empty (B, 3, H, W) batch, got shape {images.shape}")
    images = images[:max_subplots]
    bs, _, h, w = images.shape
    grid = math.ceil(bs**0.5)
    mosaic = _build_mosaic(images, grid)
    scale = max_size / grid / max(h, w)
    if scale < 1:
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (w * grid, h * grid))
    font_size = int((h + w) * grid * 0.01)
    lw = max(round(font_size / 10), 1)
    targets = _targets_array(targets)
    for i in range(bs):
        origin = _tile_origin(i, grid, w, h)
        cv2.rectangle(mosaic, origin, (origin[0] + w, origin[1] + h), (255, 255, 255), 2)
        if paths is not None and i < len(paths):
            _draw_text(mosaic, Path(paths[i]).name[:40], (origin[0] + 5, origin[1] + 5), _FILENAME_COLOR, lw)
        _annotate_tile(mosaic, targets[targets[:, 0] == i], names, (w, h, scale, origin), lw)
    fname = Path(fname)
    fname.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(fname), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {fname}")
    return fname
