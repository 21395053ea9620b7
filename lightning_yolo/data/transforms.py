"""Image + box augmentations for detection training, as composable functions over ``(img, labels)``.

Conventions shared by every function here (and by :mod:`lightning_yolo.data.mosaic` and
:mod:`lightning_yolo.data.albument`):

- ``img``: ``np.ndarray`` uint8 ``(H, W, 3)`` in BGR order, as read by ``cv2.imread``. The dataset turns it to RGB
  only at the end of its pipeline (in the conversion back from HSV when augmenting).
- ``labels``: ``np.ndarray`` float32 ``(n, 5)`` rows ``[cls, x1, y1, x2, y2]`` in pixels of the *current* image
  (pixel-edge convention: a box covering the whole image is ``[0, 0, W, H]``). ``n`` may be 0 (shape ``(0, 5)``).
- Random functions take ``rng: np.random.Generator`` and never touch global random state, so one seed reproduces
  an augmentation exactly. Functions return new arrays.

Training pipeline of the dataset, in order (hyperparameter names as in the YOLOv5 hyp files)::

    img, hw0, hw = resize_to_imgsz(img, imgsz, augment=True)
    # labels: normalised xywh -> pixel xyxy of the resized image
    if mosaic:
        index, img, labels = load_mosaic(dataset, index, rng, imgsz, geometry)                    # mosaic.py
        if rng.random() < hyp_mixup:
            img, labels = mixup(img, labels, *load_mosaic(dataset, other, rng, ...)[1:], rng=rng)
    else:
        img, ratio, pad = letterbox(img, shape, auto=False, scaleup=augment)
        labels = letterbox_labels(labels, ratio, pad)
        img, labels = random_perspective(img, labels, degrees=..., translate=..., rng=rng)
    img, labels = albumentations(img, labels, rng=rng)                                         # albument.py
    img = augment_hsv_to_rgb(img, hsv_h, hsv_s, hsv_v, rng=rng)                               # now RGB
    img, labels = random_flip(img, labels, flipud_p=hyp_flipud, fliplr_p=hyp_fliplr, rng=rng)

(with ``snap=True`` for the warps by default, see :mod:`lightning_yolo.data.warp`; a mosaic's centre and warp are
drawn first and only the tiles the output shows are decoded, see :mod:`lightning_yolo.data.mosaic`.)

Validation uses ``resize_to_imgsz(..., augment=False)`` then ``letterbox`` (rect batch shape) and
``letterbox_labels`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from lightning_yolo.data.warp import FILL_VALUE, snap_axis_aligned, snappable, warp_axis_aligned


def empty_labels() -> np.ndarray:
    """A ``(0, 5)`` float32 label array (an image without boxes)."""
    return np.zeros((0, 5), dtype=np.float32)


def as_labels(labels: np.ndarray) -> np.ndarray:
    """Copy labels into the internal ``(n, 5)`` float32 format; an empty input gives ``(0, 5)``.

    Raises:
        ValueError: when a non-empty input is not two-dimensional with 5 columns.
    """
    out = np.array(labels, dtype=np.float32, copy=True)
    if out.size == 0:
        return empty_labels()
    if out.ndim != 2 or out.shape[1] != 5:
        raise ValueError(f"labels must have shape (n, 5) [cls, x1, y1, x2, y2], got {out.shape}")
    return out


# ----------------------------------------------------------------------------------------------------- resizing


def resize_to_imgsz(
    img: np.ndarray, imgsz: int, augment: bool, original_hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Resize an image so that its long side equals ``imgsz``, keeping the aspect ratio (load-time resize).

    The short side becomes ``ceil(short * imgsz / long)`` computed in exact integer arithmetic (a float product
    can land a hair above an integer and give one pixel too many). Interpolation is bilinear when augmenting
    or enlarging and area averaging when shrinking for evaluation.

    Args:
        img: uint8 ``(h0, w0, 3)`` image.
        imgsz: target length of the long side in pixels.
        augment: True for training images.
        original_hw: The image's full size when ``img`` was decoded at a reduced scale: the target size is
            computed from it, so that a reduced decode ends at exactly the size a full one would.

    Returns:
        ``(img, (h0, w0), (h, w))``: the resized image, its original and its new height and width.
    """
    h0, w0 = original_hw or img.shape[:2]
    h, w = resized_hw((h0, w0), imgsz)
    if img.shape[:2] != (h, w):
        enlarge = max(h, w) > max(img.shape[:2])
        interp = cv2.INTER_LINEAR if (augment or enlarge) else cv2.INTER_AREA
        img = cv2.resize(img, (w, h), interpolation=interp)
    return img, (h0, w0), (img.shape[0], img.shape[1])


def resized_hw(hw: tuple[int, int], imgsz: int) -> tuple[int, int]:
    """``(h, w)`` that :func:`resize_to_imgsz` gives an ``hw`` image: long side ``imgsz``, short side rounded up."""
    h0, w0 = (int(v) for v in hw)
    long_side = max(h0, w0)
    return -(-h0 * imgsz // long_side), -(-w0 * imgsz // long_side)  # ceil division in exact integers


def letterbox(
    img: np.ndarray,
    new_shape: int | Sequence[int] = 640,
    color: tuple[int, int, int] = (FILL_VALUE, FILL_VALUE, FILL_VALUE),
    auto: bool = False,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio, then pad to ``new_shape`` (YOLOv5 letterbox).

    Args:
        img: uint8 ``(h, w, 3)`` image.
        new_shape: target size, an int for a square or ``(height, width)``.
        color: padding colour (BGR).
        auto: pad only up to the next multiple of ``stride`` instead of the full ``new_shape``.
        scale_fill: stretch to ``new_shape`` exactly, without padding (ratios then differ per axis).
        scaleup: allow enlarging; False only shrinks (used for validation).
        stride: multiple used by ``auto``.

    Returns:
        ``(img, (ratio_w, ratio_h), (dw, dh))``: the padded image, the scale factors applied to x and y, and the
        half paddings in pixels (floats; the left/top pad is ``round(dw - 0.1)``, right/bottom
        ``round(dw + 0.1)``). Map boxes with :func:`letterbox_labels`.
    """
    h, w = img.shape[:2]
    new_h, new_w = (new_shape, new_shape) if isinstance(new_shape, int) else (int(new_shape[0]), int(new_shape[1]))
    r = min(new_h / h, new_w / w)
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    unpad_w, unpad_h = round(w * r), round(h * r)
    dw, dh = float(new_w - unpad_w), float(new_h - unpad_h)
    if auto:
        dw, dh = float(dw % stride), float(dh % stride)
    elif scale_fill:
        dw, dh = 0.0, 0.0
        unpad_w, unpad_h = new_w, new_h
        ratio = (new_w / w, new_h / h)
    dw, dh = dw / 2, dh / 2
    if (w, h) != (unpad_w, unpad_h):
        img = cv2.resize(img, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    # The +-0.1 splits an odd padding so that the extra pixel goes to the bottom/right side.
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return img, ratio, (dw, dh)


def letterbox_labels(labels: np.ndarray, ratio: Sequence[float], pad: Sequence[float]) -> np.ndarray:
    """Map pixel labels of an image through :func:`letterbox` (scale, then shift by the left/top half padding).

    Args:
        labels: ``(n, 5)`` ``[cls, x1, y1, x2, y2]`` in pixels of the image given to ``letterbox``.
        ratio: ``(ratio_w, ratio_h)`` returned by ``letterbox``.
        pad: ``(dw, dh)`` returned by ``letterbox``.

    Returns:
        New ``(n, 5)`` float32 labels in pixels of the letterboxed image.
    """
    out = as_labels(labels)
    out[:, [1, 3]] = out[:, [1, 3]] * ratio[0] + pad[0]
    out[:, [2, 4]] = out[:, [2, 4]] * ratio[1] + pad[1]
    return out


# ------------------------------------------------------------------------------------------- random perspective


MIN_BOX_SIDE = 2
"""Pixels a box must exceed in width and in height after an augmentation to be kept (YOLOv5's ``wh_thr``)."""
MAX_BOX_ASPECT = 100
"""Long / short side ratio a box must stay under after an augmentation to be kept (YOLOv5's ``ar_thr``)."""


def box_candidates(box1: np.ndarray, box2: np.ndarray, area_thr: float = 0.1) -> np.ndarray:
    """Which boxes survive an augmentation.

    A box is kept when, after augmentation, it is wider and taller than :data:`MIN_BOX_SIDE` pixels, keeps more
    than ``area_thr`` of its area before augmentation, and its aspect ratio (long / short side) is under
    :data:`MAX_BOX_ASPECT`.

    Args:
        box1: ``(n, 4)`` xyxy boxes before augmentation (already multiplied by the augmentation's scale).
        box2: ``(n, 4)`` xyxy boxes after augmentation.

    Returns:
        ``(n,)`` bool mask of boxes to keep.
    """
    eps = 1e-16
    w1, h1 = box1[:, 2] - box1[:, 0], box1[:, 3] - box1[:, 1]
    w2, h2 = box2[:, 2] - box2[:, 0], box2[:, 3] - box2[:, 1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    big_enough = (w2 > MIN_BOX_SIDE) & (h2 > MIN_BOX_SIDE)
    return big_enough & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < MAX_BOX_ASPECT)


def sample_perspective_matrix(
    src_hw: tuple[int, int],
    out_wh: tuple[int, int],
    degrees: float,
    translate: float,
    scale: float,
    shear: float,
    perspective: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Draw YOLOv5's random 3x3 warp matrix.

    The matrix is ``T @ S @ R @ P @ C`` (applied right to left): move the source centre to the origin,
    perspective in ``+-perspective``, rotation in ``+-degrees`` (counter-clockwise on screen) with scale in
    ``1 +- scale``, shear in ``+-shear`` degrees per axis, then translation of the origin to ``0.5 +- translate``
    of the output size. Random draws happen in exactly that order.

    Args:
        src_hw: ``(height, width)`` of the source image.
        out_wh: ``(width, height)`` of the output image.

    Returns:
        ``(M, s)``: float64 ``(3, 3)`` matrix mapping source to output pixel coordinates, and the sampled scale.
    """
    center = np.eye(3)
    center[0, 2], center[1, 2] = -src_hw[1] / 2, -src_hw[0] / 2
    persp = np.eye(3)
    persp[2, 0] = rng.uniform(-perspective, perspective)
    persp[2, 1] = rng.uniform(-perspective, perspective)
    angle = rng.uniform(-degrees, degrees)
    s = rng.uniform(1 - scale, 1 + scale)
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    shear_m = np.eye(3)
    shear_m[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shear_m[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    trans = np.eye(3)
    trans[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_wh[0]
    trans[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_wh[1]
    return trans @ shear_m @ rot @ persp @ center, float(s)


def _is_affine(matrix: np.ndarray) -> bool:
    return matrix[2, 0] == 0 and matrix[2, 1] == 0


def warp_image(img: np.ndarray, matrix: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Warp an image by a 3x3 matrix (affine when its last row is ``[0, 0, 1]``), borders filled with 114.

    Bilinear interpolation; pixel ``(i, j)`` is sampled at its centre coordinate ``(j, i)`` (OpenCV convention).
    """
    border = (FILL_VALUE, FILL_VALUE, FILL_VALUE)
    if _is_affine(matrix):
        return cv2.warpAffine(img, matrix[:2], dsize=out_wh, borderValue=border)
    return cv2.warpPerspective(img, matrix, dsize=out_wh, borderValue=border)


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Transform xyxy boxes by a 3x3 matrix: the new box encloses the four transformed corners (not clipped).

    Args:
        boxes: ``(n, 4)`` xyxy.
        matrix: ``(3, 3)`` affine or perspective matrix.

    Returns:
        ``(n, 4)`` float64 xyxy.
    """
    n = len(boxes)
    b = boxes.astype(np.float64)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = b[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # (x1,y1) (x2,y2) (x1,y2) (x2,y1)
    xy = corners @ matrix.T
    xy = (xy[:, :2] / xy[:, 2:3]).reshape(n, 8)  # the divisor is exactly 1 for affine matrices
    xs, ys = xy[:, 0::2], xy[:, 1::2]
    return np.stack((xs.min(1), ys.min(1), xs.max(1), ys.max(1)), axis=1)


def warp_labels(
    labels: np.ndarray, matrix: np.ndarray, out_wh: tuple[int, int], scale: float = 1.0, area_thr: float = 0.1
) -> np.ndarray:
    """Transform labels by a warp matrix, clip them to the output image and drop boxes that became unusable.

    Args:
        labels: ``(n, 5)`` labels in source pixels.
        matrix: ``(3, 3)`` matrix mapping source to output pixels.
        out_wh: ``(width, height)`` of the output image (clip bounds).
        scale: the warp's scale factor; the area kept by a box is measured against its source box times this.
        area_thr: minimum kept area fraction, see :func:`box_candidates`.

    Returns:
        ``(m, 5)`` float32 labels (``m <= n``) in output pixels, every box inside the image and > 2 px per side.
    """
    labels = as_labels(labels)
    if not len(labels):
        return labels
    new = warp_boxes(labels[:, 1:5], matrix)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_wh[0])
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_wh[1])
    keep = box_candidates(labels[:, 1:5].astype(np.float64) * scale, new, area_thr=area_thr)
    out = labels[keep]
    out[:, 1:5] = new[keep]
    return out


def random_perspective(
    img: np.ndarray,
    labels: np.ndarray,
    degrees: float = 10,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 10,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
    *,
    rng: np.random.Generator,
    snap: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation, scale, shear, translation and perspective of an image and its boxes (YOLOv5).

    The output is ``(H + 2 * border[0], W + 2 * border[1])``; a negative border crops (the mosaic passes
    ``(-s // 2, -s // 2)`` to turn its ``2s`` canvas into ``s``). Boxes are warped by their corners, clipped
    and filtered by :func:`box_candidates`. See :func:`sample_perspective_matrix` for the ranges.

    Args:
        img: uint8 ``(H, W, 3)``.
        labels: ``(n, 5)`` pixel labels.
        degrees, translate, scale, shear, perspective: augmentation ranges (YOLOv5 hyp names).
        border: ``(border_h, border_w)`` pixels added on each side.
        rng: random generator.
        snap: When the drawn warp only scales (by at least 0.5) and translates, round it to the nearest one a crop
            and a resize realise and warp that way (:mod:`lightning_yolo.data.warp`): 3-4x cheaper than
            ``warpAffine``.

    Returns:
        ``(img, labels)`` of the output image.
    """
    out_wh = (img.shape[1] + border[1] * 2, img.shape[0] + border[0] * 2)
    matrix, s = sample_perspective_matrix(img.shape[:2], out_wh, degrees, translate, scale, shear, perspective, rng)
    if snap and snappable(matrix):
        matrix, region = snap_axis_aligned(matrix, out_wh)
        img = warp_axis_aligned(img, region, out_wh)
    elif border[0] or border[1] or (matrix != np.eye(3)).any():
        img = warp_image(img, matrix, out_wh)
    return img, warp_labels(labels, matrix, out_wh, scale=s)


# ------------------------------------------------------------------------------------------- colour and flips


def augment_hsv_to_rgb(
    img: np.ndarray, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5, *, rng: np.random.Generator
) -> np.ndarray:
    """Randomly scale hue, saturation and value of a BGR uint8 image (YOLOv5 ``augment_hsv``); returns RGB.

    Each channel is multiplied by a gain drawn uniformly from ``1 +- gain`` (hue wraps modulo 180, saturation and
    value are clipped to 255), through lookup tables. Nothing is drawn when all gains are 0. The conversion back
    from HSV writes RGB directly, which saves the dataset its final BGR -> RGB copy; the pixels are YOLOv5's in
    RGB order.
    """
    if not (hgain or sgain or vgain):
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    gains = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def fliplr(img: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and boxes left-right (``x -> W - x``). Returns a contiguous image and new labels."""
    labels = as_labels(labels)
    w = img.shape[1]
    labels[:, [1, 3]] = w - labels[:, [3, 1]]
    return cv2.flip(img, 1), labels  # a contiguous copy, ~40x faster than numpy's reversed view + copy


def flipud(img: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and boxes up-down (``y -> H - y``). Returns a contiguous image and new labels."""
    labels = as_labels(labels)
    h = img.shape[0]
    labels[:, [2, 4]] = h - labels[:, [4, 2]]
    return cv2.flip(img, 0), labels


def random_flip(
    img: np.ndarray, labels: np.ndarray, flipud_p: float = 0.0, fliplr_p: float = 0.5, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flip up-down with probability ``flipud_p``, then left-right with probability ``fliplr_p`` (YOLOv5 order).

    Two uniform numbers are always drawn, so the random stream does not depend on the probabilities.
    """
    if rng.random() < flipud_p:
        img, labels = flipud(img, labels)
    if rng.random() < fliplr_p:
        img, labels = fliplr(img, labels)
    return img, labels


def mixup(
    img1: np.ndarray, labels1: np.ndarray, img2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two same-sized images with ratio ``r ~ Beta(32, 32)`` and keep the boxes of both (MixUp).

    The pixel result is ``uint8(img1 * r + img2 * (1 - r))`` (truncated). Labels are concatenated, those of
    ``img1`` first.
    """
    if img1.shape != img2.shape:
        raise ValueError(f"mixup needs images of equal shape, got {img1.shape} and {img2.shape}")
    r = rng.beta(32.0, 32.0)
    img = (img1 * r + img2 * (1 - r)).astype(np.uint8)
    return img, np.concatenate((as_labels(labels1), as_labels(labels2)), axis=0)
