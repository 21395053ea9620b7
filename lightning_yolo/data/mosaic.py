"""Four-image mosaic (YOLOv5 ``load_mosaic``) over a dataset's ``(img, labels)`` tiles, decoding only what it shows.

Tiles follow :mod:`lightning_yolo.data.transforms`: BGR uint8 ``(h, w, 3)`` images already resized with
``resize_to_imgsz`` (long side ``s``), labels ``(n, 5)`` float32 ``[cls, x1, y1, x2, y2]`` in pixels of each image.
:func:`load_mosaic` draws the three extra images and the order of all four as YOLOv5 does, then the centre and
the warp (:func:`plan_mosaic`), loads from the dataset (a :class:`TileSource`) only the tiles the output shows
(:meth:`MosaicPlan.needs`) and renders them with :func:`render_mosaic`.

Layout on the ``2s x 2s`` canvas filled with 114, around a centre ``(xc, yc)`` drawn in ``[s/2, 3s/2)``::

    sample 0 | sample 1        sample 0's bottom-right corner touches the centre,
    ---------+---------        sample 1's bottom-left, sample 2's top-right and sample 3's top-left;
    sample 2 | sample 3        whatever falls outside the canvas is cut off.

The output is the ``s x s`` image YOLOv5 makes by warping the canvas with
:func:`~lightning_yolo.data.transforms.random_perspective` and border ``-s // 2``. With ``snap`` and an
axis-aligned warp (every YOLOv5 hyp file) the ``2s`` canvas is never built: only the canvas rectangle the output
shows is assembled and resized (:mod:`lightning_yolo.data.warp`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lightning_yolo.data.transforms import (
    as_labels,
    empty_labels,
    sample_perspective_matrix,
    warp_image,
    warp_labels,
)
from lightning_yolo.data.warp import Region, render_region, snap_axis_aligned, snappable

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


def _canvas_labels(labels: Sequence[np.ndarray], offsets: Sequence[tuple[int, int]], canvas: int) -> np.ndarray:
    """Tile labels shifted onto the canvas, clipped to it, without the boxes the clipping left empty.

    Unlike YOLOv5 (which keeps them until ``random_perspective`` filters them), boxes left with zero width or
    height are dropped here: they belong to objects cut off the canvas, and a rotation would otherwise inflate
    them into phantom boxes.
    """
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
    geometry: Mapping[str, float],
    snap: bool = False,
) -> MosaicPlan:
    """Draw a mosaic's centre, then its warp (YOLOv5's order).

    Args:
        img_size: ``s``, the final training image size.
        rng: random generator.
        geometry: Warp ranges ``degrees``, ``translate``, ``scale``, ``shear`` and ``perspective`` (YOLOv5 hyp
            names), e.g. :meth:`~lightning_yolo.data.dataset.AugmentSettings.geometry`.
        snap: Round an axis-aligned warp that scales by at least 0.5 so that a crop and a resize realise it (see
            :mod:`lightning_yolo.data.warp`).
    """
    center = sample_mosaic_center(img_size, rng)
    size = 2 * img_size
    out = size - 2 * (img_size // 2)
    matrix, s = sample_perspective_matrix((size, size), (out, out), **geometry, rng=rng)
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


class TileSource(Protocol):
    """What :func:`load_mosaic` needs of a dataset (:class:`~lightning_yolo.data.dataset.YOLODataset` is one)."""

    def __len__(self) -> int: ...

    def tile_hw(self, index: int) -> tuple[int, int]:
        """``(h, w)`` that image ``index`` has once loaded, known without decoding it."""
        ...

    def load_tile(self, index: int, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        """``(index used, img, labels)`` of image ``index``, or of a random other image when it is unreadable."""
        ...


def load_mosaic(
    source: TileSource,
    index: int,
    rng: np.random.Generator,
    img_size: int,
    geometry: Mapping[str, float],
    snap: bool = False,
) -> tuple[int, np.ndarray, np.ndarray]:
    """A mosaic of image ``index`` and 3 random images of ``source`` in random order, warped to ``s x s``.

    The centre and the warp are drawn first, so that tiles the output does not show are never decoded. An
    image found unreadable is replaced by another one, whose size may move the tiles: visibility is then
    checked again, until every tile the output shows is loaded.

    Args:
        source: The dataset the tiles come from.
        index: The image the mosaic is drawn for.
        rng: The sample's random generator.
        img_size: ``s``, the final training image size.
        geometry, snap: As in :func:`plan_mosaic`.

    Returns:
        ``(index used, img, labels)``: the index ``index`` was replaced by if it was unreadable, the uint8
        ``(s, s, 3)`` image and its ``(n, 5)`` float32 labels, every box inside the image.
    """
    indices = [index, *(int(i) for i in rng.integers(len(source), size=3))]
    rng.shuffle(indices)
    plan = plan_mosaic(img_size, rng, geometry, snap=snap)
    tiles: list[Tile] = [(None, empty_labels(), source.tile_hw(i)) for i in indices]
    loaded, used = [False] * 4, index
    while True:
        offsets = tile_offsets(plan.center, [hw for _, _, hw in tiles])
        todo = [k for k in range(4) if not loaded[k] and plan.needs(offsets[k], tiles[k][2])]
        if not todo:
            break
        for k in todo:
            j, img, labels = source.load_tile(indices[k], rng)
            used = j if indices[k] == index else used
            tiles[k], loaded[k] = (img, labels, img.shape[:2]), True
    img, labels = render_mosaic(plan, tiles)
    return used, img, labels
