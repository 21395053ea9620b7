"""Axis-aligned warps (a scale and a translation) done as a crop and a bilinear resize.

Every YOLOv5 hyp file sets ``degrees``, ``shear`` and ``perspective`` to 0, so the random warp of a training
image is only a scale and a translation. OpenCV's ``warpAffine`` computes a source position for every output pixel;
``resize`` interpolates separably and is 3-4x cheaper for the same output. ``resize`` maps a whole source rectangle
onto the whole output, so the warp is first rounded (:func:`snap_axis_aligned`) to the nearest one it can realise:
the source rectangle starts on a whole pixel and has a whole number of pixels. Each rounding moves a point of the
output by at most half a source pixel (the scale changes by under ``1 / (2 n)`` of itself, ``n`` the rectangle's
side, hundreds of pixels), far below the augmentation's own randomness. Labels are then warped with the rounded
matrix, so boxes stay exact.

Coordinates: ``resize`` samples output pixel centre ``x + 0.5`` at source ``(x + 0.5) / sx``, so in pixel-edge
coordinates (those of the labels) a source point ``c`` lands at ``sx * (c - x0)``: the rounded matrix maps pixels
and boxes alike. (``warpAffine`` maps pixel centres by the matrix while boxes use edges, a shift of up to a quarter
pixel between them at the scales used.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import cv2
import numpy as np

FILL_VALUE = 114
"""Grey level used for letterbox padding, mosaic canvas and warp borders."""

MIN_SCALE = 0.5
"""Warps that shrink more than this are left to ``warpAffine``: the source rectangle would be more than twice the
output per side (larger than a mosaic's whole ``2s`` canvas), and ``warpAffine`` only visits output pixels."""


class Region(NamedTuple):
    """A rectangle of source pixels ``[x, x + w) x [y, y + h)``; it may reach outside the source image."""

    x: int
    y: int
    w: int
    h: int

    def intersect(self, other: Region) -> Region | None:
        """The common part of two rectangles, or None when they do not overlap."""
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2, y2 = min(self.x + self.w, other.x + other.w), min(self.y + self.h, other.y + other.h)
        return Region(x1, y1, x2 - x1, y2 - y1) if x2 > x1 and y2 > y1 else None


def is_axis_aligned(matrix: np.ndarray) -> bool:
    """True for a 3x3 matrix that only scales (by positive factors) and translates."""
    m = np.asarray(matrix)
    return bool(m[0, 1] == 0 and m[1, 0] == 0 and m[2, 0] == 0 and m[2, 1] == 0 and m[2, 2] == 1) and bool(
        m[0, 0] > 0 and m[1, 1] > 0
    )


def snappable(matrix: np.ndarray) -> bool:
    """True for an axis-aligned warp that scales by at least :data:`MIN_SCALE`: worth a crop and a resize."""
    return is_axis_aligned(matrix) and bool(matrix[0, 0] >= MIN_SCALE and matrix[1, 1] >= MIN_SCALE)


def snap_axis_aligned(matrix: np.ndarray, out_wh: tuple[int, int]) -> tuple[np.ndarray, Region]:
    """Round an axis-aligned warp to one that a crop plus a resize to ``out_wh`` realises exactly.

    Args:
        matrix: ``(3, 3)`` axis-aligned matrix mapping source to output coordinates.
        out_wh: ``(width, height)`` of the output image.

    Returns:
        ``(snapped, region)``: the realised float64 ``(3, 3)`` matrix (scale ``out / n`` for a whole number ``n`` of
        source pixels, translation a whole number of source pixels), and the source region resized onto the output.
    """
    out_w, out_h = out_wh
    n_w, n_h = max(1, round(out_w / matrix[0, 0])), max(1, round(out_h / matrix[1, 1]))
    sx, sy = out_w / n_w, out_h / n_h
    x0, y0 = round(-matrix[0, 2] / matrix[0, 0]), round(-matrix[1, 2] / matrix[1, 1])  # where the output starts
    snapped = np.array([[sx, 0.0, -sx * x0], [0.0, sy, -sy * y0], [0.0, 0.0, 1.0]])
    return snapped, Region(int(x0), int(y0), int(n_w), int(n_h))


def paste_clipped(buffer: np.ndarray, origin: Region, tile: np.ndarray, at: tuple[int, int], clip: Region) -> None:
    """Copy the part of ``tile`` (top-left corner at source position ``at``) inside ``clip`` and ``origin``.

    Args:
        buffer: Image holding the source region ``origin`` (its pixel ``(0, 0)`` is source ``(origin.x, origin.y)``).
        origin: The region ``buffer`` holds.
        tile: uint8 ``(h, w, 3)`` image.
        at: ``(x, y)`` source position of the tile's top-left corner.
        clip: Source area the tile may cover (a mosaic cuts tiles at its canvas border).
    """
    area = Region(at[0], at[1], tile.shape[1], tile.shape[0]).intersect(clip)
    area = area.intersect(origin) if area is not None else None
    if area is None:
        return
    dst = buffer[area.y - origin.y : area.y - origin.y + area.h, area.x - origin.x : area.x - origin.x + area.w]
    dst[...] = tile[area.y - at[1] : area.y - at[1] + area.h, area.x - at[0] : area.x - at[0] + area.w]


def render_region(
    region: Region, out_wh: tuple[int, int], tiles: Iterable[tuple[np.ndarray, tuple[int, int]]], clip: Region
) -> np.ndarray:
    """Resize ``region`` of a source made of ``tiles`` on a ``FILL_VALUE`` background to ``out_wh``.

    Args:
        region: Source rectangle mapped onto the whole output (from :func:`snap_axis_aligned`).
        out_wh: ``(width, height)`` of the output.
        tiles: ``(image, (x, y))`` pairs: uint8 ``(h, w, 3)`` images and their top-left source positions.
        clip: Source area outside which the source is ``FILL_VALUE`` even where a tile reaches.

    Returns:
        uint8 ``(out_h, out_w, 3)`` image (bilinear; the outermost output pixels repeat the region's edge pixels
        where ``warpAffine`` would blend in the pixel beyond it).
    """
    buffer = np.full((region.h, region.w, 3), FILL_VALUE, dtype=np.uint8)
    for tile, at in tiles:
        paste_clipped(buffer, region, tile, at, clip)
    if (region.w, region.h) == tuple(out_wh):
        return buffer
    return cv2.resize(buffer, tuple(out_wh), interpolation=cv2.INTER_LINEAR)


def warp_axis_aligned(img: np.ndarray, region: Region, out_wh: tuple[int, int]) -> np.ndarray:
    """One image warped by a snapped axis-aligned matrix: ``region`` of ``img`` resized to ``out_wh`` (``img`` itself
    when that is the identity)."""
    h, w = img.shape[:2]
    whole = Region(0, 0, w, h)
    if region == whole and (w, h) == tuple(out_wh):
        return img
    if whole.intersect(region) == region and (region.w, region.h) != tuple(out_wh):  # no padding needed: no copy
        crop = img[region.y : region.y + region.h, region.x : region.x + region.w]
        return cv2.resize(crop, tuple(out_wh), interpolation=cv2.INTER_LINEAR)
    return render_region(region, out_wh, [(img, (0, 0))], whole)
