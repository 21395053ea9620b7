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

The dataset instead draws a :class:`MosaicPlan` first (centre and warp), decodes only the tiles the output shows
(:meth:`MosaicPlan.needs`) and renders with :func:`render_mosaic`. With ``snap`` and an axis-aligned warp (every
YOLOv5 hyp file) the ``2s`` canvas is never built: only the canvas rectangle the output shows is assembled and
resized (:mod:`lightning_yolo.data.warp`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lightning_yolo.data.transforms import (
    as_labels,
    sample_perspective_matrix,
    warp_image,
    warp_labels,
)
from lightning_yolo.data.warp import Region, render_region, snap_axis_aligned, snappable

Sample = tuple[np.ndarray, np.ndarray]
"""An ``(img, labels)`` pair in the internal format."""

Tile = tuple[np.ndarray | None, np.ndarray, tuple[int, int]]
"""``(img, labels, (h, w))`` of one mosaic tile; ``img`` may be None for a tile the plan does not need."""


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


def _check_samples(samples: Sequence[Sample]) -> None:
    if len(samples) != 4:
        raise ValueError(f"mosaic4 needs exactly 4 samples, got {len(samples)}")
    for i, (img, _) in enumerate(samples):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"mosaic4 sample {i}: expected a uint8 (h, w, 3) image, got {img.dtype} {img.shape}")


def _canvas_labels(labels: Sequence[np.ndarray], offsets: Sequence[tuple[int, int]], canvas: int) -> np.ndarray:
    """Tile labels shifted onto the canvas, clipped to it, without the boxes the clipping left empty."""
    shifted = []
    for tile_labels, (ox, oy) in zip(labels, offsets, strict=True):
        tile_labels = as_labels(tile_labels)
        tile_labels[:, [1, 3]] += ox
        tile_labels[:, [2, 4]] += oy
        shifted.append(tile_labels)
    out = np.concatenate(shifted, axis=0)
    np.clip(out[:, 1:5], 0, canvas, out=out[:, 1:5])
    keep = (out[:, 3] > out[:, 1]) & (out[:, 4] > out[:, 2])
    return out[keep]


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
    center = sample_mosaic_center(img_size, rng) if center is None else center
    return _assemble([(img, labels, img.shape[:2]) for img, labels in samples], center, img_size)


def _assemble(tiles: Sequence[Tile], center: tuple[int, int], img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole ``2s`` canvas and the tiles' labels on it."""
    size = 2 * img_size
    whole = Region(0, 0, size, size)
    offsets = tile_offsets(center, [hw for _, _, hw in tiles])
    canvas = render_region(whole, (size, size), _placed(tiles, offsets), whole)  # same size: no resize
    return canvas, _canvas_labels([labels for _, labels, _ in tiles], offsets, size)


def _placed(tiles: Sequence[Tile], offsets: Sequence[tuple[int, int]]) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """``(image, canvas position)`` of the tiles that were loaded."""
    return [(img, offset) for (img, _, _), offset in zip(tiles, offsets, strict=True) if img is not None]


@dataclass(frozen=True)
class MosaicPlan:
    """The random draws of one mosaic, made before any tile is decoded.

    Attributes:
        img_size: ``s``; the canvas is ``2s`` and the output ``s`` (``2s - 2 * (s // 2)``) square.
        center: ``(xc, yc)`` mosaic centre.
        matrix: ``(3, 3)`` warp from canvas to output pixels (the snapped one when ``region`` is set).
        scale: The warp's drawn scale (``box_candidates`` compares areas against it).
        region: Canvas rectangle resized onto the output (axis-aligned snapped warps), or None when the whole canvas
            is warped.
    """

    img_size: int
    center: tuple[int, int]
    matrix: np.ndarray
    scale: float
    region: Region | None

    @property
    def out_wh(self) -> tuple[int, int]:
        """``(width, height)`` of the output."""
        out = 2 * self.img_size - 2 * (self.img_size // 2)
        return out, out

    @property
    def canvas(self) -> Region:
        """The ``2s x 2s`` canvas; tiles are cut at its border."""
        return Region(0, 0, 2 * self.img_size, 2 * self.img_size)

    @functools.cached_property
    def window(self) -> Region | None:
        """Canvas pixels the output is computed from, or None when unknown (perspective warps: all of them)."""
        if self.region is not None:
            return self.region
        if self.matrix[2, 0] or self.matrix[2, 1]:
            return None
        w, h = self.out_wh
        centres = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64)
        xy = centres @ np.linalg.inv(self.matrix).T
        x1, y1 = np.floor(xy[:, :2].min(0)).astype(int) - 1  # bilinear sampling reads one pixel further
        x2, y2 = np.ceil(xy[:, :2].max(0)).astype(int) + 2
        return Region(int(x1), int(y1), int(x2 - x1), int(y2 - y1))

    def needs(self, offset: tuple[int, int], hw: tuple[int, int]) -> bool:
        """Whether any pixel of a tile at canvas position ``offset`` with size ``hw`` can reach the output.

        A tile that cannot also contributes no boxes: each of its boxes lies outside the output and is dropped.
        """
        tile = Region(offset[0], offset[1], hw[1], hw[0]).intersect(self.canvas)
        window = self.window
        return tile is not None and (window is None or tile.intersect(window) is not None)


def plan_mosaic(
    img_size: int,
    rng: np.random.Generator,
    *,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    perspective: float = 0.0,
    snap: bool = False,
) -> MosaicPlan:
    """Draw a mosaic's centre, then its warp (the order :func:`mosaic4_augment` always used).

    Args:
        img_size: ``s``, the final training image size.
        rng: random generator.
        degrees, translate, scale, shear, perspective: warp ranges (YOLOv5 hyp names).
        snap: Round an axis-aligned warp that scales by at least 0.5 so that a crop and a resize realise it (see
            :mod:`lightning_yolo.data.warp`).
    """
    center = sample_mosaic_center(img_size, rng)
    size = 2 * img_size
    out = size - 2 * (img_size // 2)
    matrix, s = sample_perspective_matrix((size, size), (out, out), degrees, translate, scale, shear, perspective, rng)
    region = None
    if snap and snappable(matrix):
        matrix, region = snap_axis_aligned(matrix, (out, out))
    return MosaicPlan(img_size, center, matrix, s, region)


def render_mosaic(plan: MosaicPlan, tiles: Sequence[Tile]) -> tuple[np.ndarray, np.ndarray]:
    """The output image and labels of a plan.

    Args:
        plan: From :func:`plan_mosaic`.
        tiles: 4 tiles in mosaic order; a tile's image may be None when ``plan.needs`` is False for it.

    Returns:
        ``(img, labels)``: uint8 ``(s, s, 3)`` and ``(n, 5)`` float32 labels, every box inside the image.
    """
    offsets = tile_offsets(plan.center, [hw for _, _, hw in tiles])
    for (img, _, hw), offset in zip(tiles, offsets, strict=True):
        if img is None and plan.needs(offset, hw):
            raise ValueError(f"mosaic tile at {offset} with size {hw} is visible but was not loaded")
    placed, canvas = _placed(tiles, offsets), plan.canvas
    if plan.region is None:
        img = warp_image(render_region(canvas, (canvas.w, canvas.h), placed, canvas), plan.matrix, plan.out_wh)
    else:
        img = render_region(plan.region, plan.out_wh, placed, canvas)
    labels = _canvas_labels([labels for _, labels, _ in tiles], offsets, canvas.w)
    return img, warp_labels(labels, plan.matrix, plan.out_wh, scale=plan.scale)


def mosaic4_augment(
    samples: Sequence[Sample], img_size: int, *, rng: np.random.Generator, snap: bool = False, **geometry: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic of 4 samples followed by ``random_perspective`` cropping the ``2s`` canvas to ``s x s``.

    Args:
        samples: 4 ``(img, labels)`` pairs in mosaic order.
        img_size: ``s``, the final training image size.
        rng: random generator.
        snap: As in :func:`plan_mosaic`.
        **geometry: ``degrees``, ``translate``, ``scale``, ``shear``, ``perspective`` as in :func:`plan_mosaic`
            (defaults: YOLOv5's ``hyp.scratch-low``, degrees 0, translate 0.1, scale 0.5, shear 0).

    Returns:
        ``(img, labels)``: uint8 ``(s, s, 3)`` and ``(n, 5)`` float32 labels, every box inside the image.
    """
    _check_samples(samples)
    plan = plan_mosaic(img_size, rng, snap=snap, **geometry)
    return render_mosaic(plan, [(img, labels, img.shape[:2]) for img, labels in samples])
