"""Axis-aligned warps as crop + resize: the rounding bound, pixels against warpAffine, exact boxes, skipped tiles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lightning_yolo.data.dataset import AugmentSettings
from lightning_yolo.data.mosaic import plan_mosaic, render_mosaic, tile_offsets
from lightning_yolo.data.transforms import empty_labels, random_perspective, warp_labels
from lightning_yolo.data.warp import Region, is_axis_aligned, snap_axis_aligned, snappable, warp_axis_aligned

S = 64
SIZES = [(64, 40), (36, 64), (50, 54), (64, 64)]  # (h, w) per tile, long side = S as after resize_to_imgsz


def scale_translate(s: float, tx: float, ty: float) -> np.ndarray:
    return np.array([[s, 0.0, tx], [0.0, s, ty], [0.0, 0.0, 1.0]])


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise blurred to a few grey levels per pixel of slope, so interpolation error stays measurable."""
    return cv2.GaussianBlur(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), (0, 0), 3)


def geometry(**ranges: float) -> dict[str, float]:
    """Warp ranges of ``hyp.scratch-low`` (translate 0.1, scale 0.5, no rotation, shear or perspective), overridden."""
    return AugmentSettings(**ranges).geometry()


def tiles(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (h, w) in enumerate(SIZES):
        labels = np.array([[i, w * 0.2, h * 0.3, w * 0.7, h * 0.9], [i + 10, 0, 0, 9, 7]], np.float32)
        out.append((smooth_image(rng, h, w), labels))
    return out


def test_is_axis_aligned():
    assert is_axis_aligned(scale_translate(0.7, 3.0, -2.0))
    rotated = scale_translate(1.0, 0, 0)
    rotated[0, 1] = 1e-9
    assert not is_axis_aligned(rotated)
    perspective = scale_translate(1.0, 0, 0)
    perspective[2, 0] = 1e-6
    assert not is_axis_aligned(perspective)
    assert not is_axis_aligned(scale_translate(-1.0, 0, 0))  # a mirror is not a crop


@pytest.mark.parametrize("seed", range(20))
def test_snap_moves_points_by_at_most_a_pixel_and_crops_whole_pixels(seed: int):
    rng = np.random.default_rng(seed)
    out_wh = (int(rng.integers(32, 700)), int(rng.integers(32, 700)))
    s = rng.uniform(0.5, 1.5)
    m = scale_translate(s, rng.uniform(-900, 300), rng.uniform(-900, 300))
    m[1, 1] = s * rng.uniform(0.9, 1.1)
    snapped, region = snap_axis_aligned(m, out_wh)
    assert all(isinstance(v, int) for v in region)
    # the rounded warp maps the region's corners exactly onto the output's corners
    corners = np.array([[region.x, region.y, 1.0], [region.x + region.w, region.y + region.h, 1.0]])
    np.testing.assert_allclose((corners @ snapped.T)[:, :2], [[0, 0], list(out_wh)], atol=1e-9)
    # rounding the size to whole pixels changes the scale by at most half a source pixel over the output, and the
    # start by at most half a source pixel: points on the output move by at most one source pixel in all
    grid = np.stack(np.meshgrid(np.linspace(0, out_wh[0], 7), np.linspace(0, out_wh[1], 7)), -1).reshape(-1, 2)
    src = np.c_[grid, np.ones(len(grid))] @ np.linalg.inv(m).T
    moved = np.abs((src @ snapped.T - src @ m.T)[:, :2])
    assert (moved[:, 0] <= snapped[0, 0] + 1e-9).all() and (moved[:, 1] <= snapped[1, 1] + 1e-9).all()


@pytest.mark.parametrize("seed", range(12))
def test_crop_and_resize_equal_warp_affine_sampling_pixel_centres(seed: int):
    """resize samples output pixel centre ``x + 0.5`` at source ``(x + 0.5) / s`` (pixel edges): warpAffine with
    the same mapping written for pixel centres (``x_out = s * x_src + t + (s - 1) / 2``) is the reference."""
    rng = np.random.default_rng(seed)
    img = smooth_image(rng, 90, 120)
    snapped, region = snap_axis_aligned(scale_translate(rng.uniform(0.5, 1.5), *rng.uniform(-60, 30, 2)), (80, 72))
    out = warp_axis_aligned(img, region, (80, 72))
    centres = snapped.copy()
    centres[:2, 2] += (np.diag(snapped)[:2] - 1) / 2
    ref = cv2.warpAffine(img, centres[:2], (80, 72), borderValue=(114, 114, 114))
    assert out.shape == ref.shape == (72, 80, 3)
    diff = np.abs(out.astype(int) - ref.astype(int))[1:-1, 1:-1]  # the edge row/column repeats the border pixel
    # warpAffine rounds source positions to 1/32 px and resize its weights to 1/2048: a few levels at most here
    assert diff.max() <= 3 and diff.mean() < 0.5


def test_warp_axis_aligned_pads_outside_the_image_and_is_identity_when_nothing_moves():
    img = np.full((20, 30, 3), 200, np.uint8)
    out = warp_axis_aligned(img, Region(-10, 5, 30, 20), (30, 20))
    assert (out[:, :10] == 114).all() and (out[:15, 10:] == 200).all() and (out[15:] == 114).all()
    assert warp_axis_aligned(img, Region(0, 0, 30, 20), (30, 20)) is img


@pytest.mark.parametrize("seed", range(8))
def test_snapped_random_perspective_boxes_follow_the_pixels(seed: int):
    rng = np.random.default_rng(seed)
    x1, y1 = (int(v) for v in rng.integers(10, 30, 2))
    box = (x1, y1, x1 + int(rng.integers(12, 30)), y1 + int(rng.integers(12, 30)))
    img = np.zeros((64, 64, 3), np.uint8)
    img[box[1] : box[3], box[0] : box[2]] = 255
    labels = np.array([[1, *box]], np.float32)
    kw = dict(degrees=0, translate=0.2, scale=0.5, shear=0, perspective=0)
    out, lab = random_perspective(img, labels, **kw, rng=np.random.default_rng(seed), snap=True)
    ys, xs = np.nonzero(out[..., 0] > 127)
    extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # the half-intensity edge of the resized rectangle is where the box edge lands (to within a pixel's rounding)
    np.testing.assert_allclose(lab[0, 1:], extent, atol=0.75)


def test_snap_is_only_used_for_axis_aligned_warps_that_shrink_at_most_2x():
    assert snappable(scale_translate(0.5, 3, 4)) and not snappable(scale_translate(0.49, 3, 4))
    img = smooth_image(np.random.default_rng(1), 40, 40)
    for kw in (dict(degrees=20, scale=0.3), dict(degrees=0, scale=0.9)):  # a rotation; a scale in 0.1 to 1.9
        for seed in range(5):
            draws = np.random.default_rng(seed).uniform(size=4)
            if "scale" in kw and kw["degrees"] == 0 and 1 - 0.9 + 1.8 * draws[3] >= 0.5:
                continue  # that draw is snapped: only compare the ones left to warpAffine
            a = random_perspective(img, empty_labels(), **kw, rng=np.random.default_rng(seed), snap=True)
            b = random_perspective(img, empty_labels(), **kw, rng=np.random.default_rng(seed), snap=False)
            np.testing.assert_array_equal(a[0], b[0])


def test_strong_shrink_mosaics_keep_the_canvas_warp():
    plans = [plan_mosaic(S, np.random.default_rng(seed), geometry(scale=0.9), snap=True) for seed in range(40)]
    for plan in plans:
        assert (plan.region is None) == (plan.scale < 0.5)
        if plan.region is not None:
            assert plan.region.w <= 2 * S and plan.region.h <= 2 * S  # never larger than the canvas
    assert 0 < sum(plan.region is None for plan in plans) < len(plans)  # both kinds occur


@pytest.mark.parametrize("seed", range(10))
def test_snapped_mosaic_is_the_canvas_region_resized_with_exact_boxes(seed: int, mosaic_canvas):
    samples = tiles(seed)
    plan = plan_mosaic(S, np.random.default_rng(seed), geometry(translate=0.2), snap=True)
    assert plan.region is not None
    img, labels = render_mosaic(plan, [(im, lb, im.shape[:2]) for im, lb in samples])
    canvas, canvas_labels = mosaic_canvas(samples, plan.center, S)
    np.testing.assert_array_equal(img, warp_axis_aligned(canvas, plan.region, plan.out_wh))
    expected = warp_labels(canvas_labels, plan.matrix, plan.out_wh, scale=plan.scale)
    np.testing.assert_allclose(labels, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("snap", [True, False])
def test_tiles_the_plan_does_not_need_change_nothing(snap: bool):
    skipped = 0
    ranges = geometry(degrees=0 if snap else 10, translate=0.3, shear=0 if snap else 3)
    for seed in range(60):
        samples = tiles(seed)
        plan = plan_mosaic(S, np.random.default_rng(seed), ranges, snap=snap)
        hws = [im.shape[:2] for im, _ in samples]
        full = [(im, lb, hw) for (im, lb), hw in zip(samples, hws, strict=True)]
        needed = [plan.needs(o, hw) for o, hw in zip(tile_offsets(plan.center, hws), hws, strict=True)]
        lazy = [t if need else (None, empty_labels(), t[2]) for t, need in zip(full, needed, strict=True)]
        a, b = render_mosaic(plan, full), render_mosaic(plan, lazy)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        skipped += needed.count(False)
    assert skipped >= 5  # the case happens: a strong scale-up shows only part of the canvas


def test_render_refuses_a_needed_tile_that_was_not_loaded():
    samples = tiles(0)
    plan = plan_mosaic(S, np.random.default_rng(0), geometry(), snap=True)
    lazy = [(None, lb, im.shape[:2]) for im, lb in samples]
    with pytest.raises(ValueError, match="not loaded"):
        render_mosaic(plan, lazy)


def test_perspective_plan_needs_every_tile_on_the_canvas():
    plan = plan_mosaic(S, np.random.default_rng(0), geometry(perspective=0.001))
    assert plan.region is None and plan.window is None
    assert plan.needs((0, 0), (10, 10)) and not plan.needs((-20, -20), (10, 10))  # that one is off the canvas


@pytest.mark.parametrize("seed", range(10))
def test_snapped_random_perspective_boxes_match_a_float64_corner_reference(seed: int):
    rng = np.random.default_rng(100 + seed)
    h, w = 48, 64
    xy = rng.uniform(0, [w - 4, h - 4], size=(12, 2))
    labels = np.c_[rng.integers(0, 5, 12), xy, np.minimum(xy + rng.uniform(3, [w / 2, h / 2], (12, 2)), [w, h])]
    labels = labels.astype(np.float32)
    out, lab = random_perspective(
        smooth_image(rng, h, w), labels, 0, 0.2, 0.5, 0, 0, border=(-8, 4), rng=np.random.default_rng(seed), snap=True
    )
    out_w, out_h = w + 8, h - 16
    # the draws of YOLOv5's warp in order (perspective x2, angle, scale, shear x2, translation x2), written out
    d = np.random.default_rng(seed).uniform(size=8)
    s = 0.5 + d[3]  # uniform(1 - 0.5, 1 + 0.5)
    tx, ty = (0.3 + 0.4 * d[6]) * out_w - s * w / 2, (0.3 + 0.4 * d[7]) * out_h - s * h / 2
    # rounded: whole-pixel source size and start
    sx, sy = out_w / round(out_w / s), out_h / round(out_h / s)
    x0, y0 = round(-tx / s), round(-ty / s)
    ref = []
    for _, x1, y1, x2, y2 in labels.astype(np.float64):
        ref.append([sx * (x1 - x0), sy * (y1 - y0), sx * (x2 - x0), sy * (y2 - y0)])
    ref = np.array(ref)
    ref[:, [0, 2]] = ref[:, [0, 2]].clip(0, out_w)
    ref[:, [1, 3]] = ref[:, [1, 3]].clip(0, out_h)
    w0, h0 = (labels[:, 3] - labels[:, 1]) * s, (labels[:, 4] - labels[:, 2]) * s
    w1, h1 = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (w1 > 2) & (h1 > 2) & (w1 * h1 / (w0 * h0) > 0.1) & (np.maximum(w1 / h1, h1 / w1) < 100)
    assert out.shape == (out_h, out_w, 3)
    np.testing.assert_array_equal(lab[:, 0], labels[keep, 0])
    np.testing.assert_allclose(lab[:, 1:], ref[keep], rtol=0, atol=1e-3)
    assert ((lab[:, [1, 3]] >= 0) & (lab[:, [1, 3]] <= out_w)).all() and (lab[:, 3] > lab[:, 1]).all()
