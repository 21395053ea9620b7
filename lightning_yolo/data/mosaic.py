"""Four-image mosaic (YOLOv5 ``load_mosaic``) over ``(img, labels)`` samples.

Inputs follow :mod:`lightning_yolo.data.transforms`: BGR uint8 ``(h, w, 3)`` images already resized with
``resize_to_imgsz`` (long side ``s``), labels ``(n, 5)`` float32 ``[cls, x1, y1, x2, y2]`` in pixels of each image.
Choosing the three extra samples and their order is the dataset's job (YOLOv5 draws 3 random indices and shuffles
all 4); this module only places them.

Layout on the ``2s x 2s`` canvas filled with 114, around a centre ``(xc, yc)`` drawn in ``[s/2, 3s/2)``::

    sample 0 | sample 1        sample 0's bottom-right corner touches the centre,
    ---------+---------        sample 1's bottom-left, sample 2's top-right and sample 3's top-left;
    sample 2 | sample 3        whatever falls outside the canvas is cut off.

Typical use: ``img, labels = mosaic4_augment(samples, s, rng=rng, degrees=..., scale=...)`` returns an ``s x s``
image (mosaic, then :func:`~lightning_yolo.data.transforms.random_perspective` with border ``-s // 2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lightning_yolo.data.transforms import FILL_VALUE, as_labels, random_perspective

Sample = tuple[np.ndarray, np.ndarray]
"""An ``(img, labels)`` pair in the internal format."""


def sample_mosaic_center(img_size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Draw the mosaic centre ``(xc, yc)`` as integers, uniform in ``[s // 2, 2s - s // 2)`` (``yc`` drawn first)."""
    low, high = img_size // 2, 2 * img_size - img_size // 2
    yc = int(rng.uniform(low, high))
    xc = int(rng.uniform(low, high))
    return xc, yc


def tile_offsets(center: tuple[int, int], tile_hw: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Canvas position ``(x, y)`` of each tile's top-left corner (may be negative: that part is cut off).

    Args:
        center: ``(xc, yc)`` mosaic centre.
        tile_hw: ``(h, w)`` of the 4 tiles in mosaic order (top-left, top-right, bottom-left, bottom-right).
    """
    xc, yc = center
    (h0, w0), (h1, _), (_, w2), _ = tile_hw
    return [(xc - w0, yc - h0), (xc, yc - h1), (xc - w2, yc), (xc, yc)]


def _paste(canvas: np.ndarray, tile: np.ndarray, offset: tuple[int, int]) -> None:
    """Copy ``tile`` onto ``canvas`` with its top-left corner at ``offset``, cropping what falls outside."""
    ox, oy = offset
    ch, cw = canvas.shape[:2]
    th, tw = tile.shape[:2]
    x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + tw, cw), min(oy + th, ch)
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = tile[y1 - oy : y2 - oy, x1 - ox : x2 - ox]


def _check_samples(samples: Sequence[Sample]) -> None:
    if len(samples) != 4:
        raise ValueError(f"mosaic4 needs exactly 4 samples, got {len(samples)}")
    for i, (img, _) in enumerate(samples):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"mosaic4 sample {i}: expected a uint8 (h, w, 3) image, got {img.dtype} {img.shape}")


def mosaic4(
    samples: Sequence[Sample],
    img_size: int,
    rng: np.random.Generator,
    center: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Place 4 samples around a random centre on a ``2s x 2s`` canvas.

    Boxes are shifted with their tile, clipped to ``[0, 2s]`` and, unlike YOLOv5 (which keeps them until
    ``random_perspective`` filters them), boxes left with zero width or height by the clipping are dropped:
    they belong to objects cut off the canvas, and a rotation would otherwise inflate them into phantom boxes.

    Args:
        samples: 4 ``(img, labels)`` pairs in mosaic order (top-left, top-right, bottom-left, bottom-right).
        img_size: ``s``, the final training image size.
        rng: random generator (one centre is drawn unless ``center`` is given).
        center: fixed ``(xc, yc)`` instead of a random one.

    Returns:
        ``(img, labels)``: uint8 ``(2s, 2s, 3)`` canvas and ``(n, 5)`` float32 labels in canvas pixels.
    """
    _check_samples(samples)
    s = img_size
    center = sample_mosaic_center(s, rng) if center is None else center
    canvas = np.full((2 * s, 2 * s, 3), FILL_VALUE, dtype=np.uint8)
    offsets = tile_offsets(center, [img.shape[:2] for img, _ in samples])
    shifted = []
    for (img, labels), (ox, oy) in zip(samples, offsets, strict=True):
        _paste(canvas, img, (ox, oy))
        labels = as_labels(labels)
        labels[:, [1, 3]] += ox
        labels[:, [2, 4]] += oy
        shifted.append(labels)
    labels = np.concatenate(shifted, axis=0)
    np.clip(labels[:, 1:5], 0, 2 * s, out=labels[:, 1:5])
    keep = (labels[:, 3] > labels[:, 1]) & (labels[:, 4] > labels[:, 2])
    return canvas, labels[keep]


def mosaic4_augment(
    samples: Sequence[Sample],
    img_size: int,
    *,
    rng: np.random.Generator,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    perspective: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic of 4 samples followed by ``random_perspective`` cropping the ``2s`` canvas to ``s x s``.

    Defaults are YOLOv5's ``hyp.scratch-low`` geometry (degrees 0, translate 0.1, scale 0.5, shear 0).

    Returns:
        ``(img, labels)``: uint8 ``(s, s, 3)`` and ``(n, 5)`` float32 labels, every box inside the image.
    """
    img, labels = mosaic4(samples, img_size, rng)
    border = (-(img_size // 2), -(img_size // 2))
    return random_perspective(img, labels, degrees, translate, scale, shear, perspective, border, rng=rng)
