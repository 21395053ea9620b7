"""Four-image mosaic: tile placement, exact boxes, clipping, centre range, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_yolo.data.mosaic import mosaic4, mosaic4_augment, sample_mosaic_center

S = 32
SIZES = [(32, 20), (18, 32), (25, 27), (32, 32)]  # (h, w) per tile, long side = S as after resize_to_imgsz


def make_samples(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Noise tiles, each with a box in the middle and one touching its top-left corner."""
    rng = np.random.default_rng(seed)
    samples = []
    for i, (h, w) in enumerate(SIZES):
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        labels = np.array([[i, w * 0.25, h * 0.25, w * 0.75, h * 0.75], [i + 10, 0, 0, 5, 6]], np.float32)
        samples.append((img, labels))
    return samples


def expected_canvas(samples, xc: int, yc: int) -> np.ndarray:
    """The canvas pixel by pixel: which quadrant of the centre it lies in, then where in that tile."""
    canvas = np.full((2 * S, 2 * S, 3), 114, np.uint8)
    for y in range(2 * S):
        for x in range(2 * S):
            i = (2 if y >= yc else 0) + (1 if x >= xc else 0)
            img = samples[i][0]
            h, w = img.shape[:2]
            ty = y - (yc - h) if y < yc else y - yc  # upper tiles end at the centre, lower ones start there
            tx = x - (xc - w) if x < xc else x - xc
            if 0 <= ty < h and 0 <= tx < w:
                canvas[y, x] = img[ty, tx]
    return canvas


def expected_labels(samples, xc: int, yc: int) -> np.ndarray:
    rows = []
    for i, (img, labels) in enumerate(samples):
        h, w = img.shape[:2]
        dx = xc - w if i in (0, 2) else xc
        dy = yc - h if i in (0, 1) else yc
        for c, x1, y1, x2, y2 in labels.astype(np.float64):
            box = np.clip([x1 + dx, y1 + dy, x2 + dx, y2 + dy], 0, 2 * S)
            if box[2] > box[0] and box[3] > box[1]:
                rows.append([c, *box])
    return np.array(rows).reshape(-1, 5)


def assert_boxes_inside(img: np.ndarray, labels: np.ndarray) -> None:
    h, w = img.shape[:2]
    assert labels.dtype == np.float32 and labels.shape[1] == 5
    x1, y1, x2, y2 = labels[:, 1:5].T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
    assert (x2 > x1).all() and (y2 > y1).all()


@pytest.mark.parametrize("center", [(32, 32), (16, 47), (47, 16), (20, 40)])
def test_mosaic4_placement_and_boxes_exact(center):
    samples = make_samples()
    img, labels = mosaic4(samples, S, rng=np.random.default_rng(0), center=center)
    assert img.shape == (2 * S, 2 * S, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, expected_canvas(samples, *center))
    np.testing.assert_allclose(labels, expected_labels(samples, *center), rtol=0, atol=1e-5)
    assert_boxes_inside(img, labels)


def test_mosaic4_box_matches_rectangle_on_canvas():
    h, w = 20, 30
    samples = []
    for i in range(4):
        img = np.zeros((h, w, 3), np.uint8)
        img[5:15, 8:20] = 60 * (i + 1)  # rectangle covering pixel-edge box [8, 5, 20, 15]
        samples.append((img, np.array([[i, 8, 5, 20, 15]], np.float32)))
    canvas, labels = mosaic4(samples, S, rng=np.random.default_rng(0), center=(33, 31))
    for i in range(4):
        ys, xs = np.nonzero(canvas[..., 0] == 60 * (i + 1))
        extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_array_equal(labels[labels[:, 0] == i, 1:], [extent])


def test_mosaic4_drops_boxes_cut_off_the_canvas():
    samples = make_samples()
    # centre at (16, 16): tile 0 (32 x 20) starts at (-4, -16), so its corner box [0, 0, 5, 6] moves to
    # [-4, -16, 1, -10] and is clipped to zero height; tile 2 (25 x 27) starts at (-11, 16), its corner box
    # moves to [-11, 16, -6, 22] and is clipped to zero width
    _, labels = mosaic4(samples, S, rng=np.random.default_rng(0), center=(16, 16))
    assert sorted(labels[:, 0].tolist()) == [0, 1, 2, 3, 11, 13]


def test_mosaic_center_range_and_seed():
    centers = [sample_mosaic_center(S, np.random.default_rng(seed)) for seed in range(300)]
    arr = np.array(centers)
    assert arr.min() >= S // 2 and arr.max() < 3 * S // 2 and arr.dtype.kind == "i"
    assert arr.min() <= S // 2 + 2 and arr.max() >= 3 * S // 2 - 3  # the whole range is used
    a = mosaic4(make_samples(), S, rng=np.random.default_rng(5))
    b = mosaic4(make_samples(), S, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_mosaic4_augment_without_warp_is_the_centre_crop():
    samples = make_samples(1)
    zero = dict(degrees=0, translate=0, scale=0, shear=0, perspective=0)
    img, labels = mosaic4_augment(samples, S, rng=np.random.default_rng(9), **zero)
    canvas, canvas_labels = mosaic4(samples, S, rng=np.random.default_rng(9))
    assert img.shape == (S, S, 3)
    np.testing.assert_array_equal(img, canvas[S // 2 : S // 2 + S, S // 2 : S // 2 + S])
    ref = canvas_labels.astype(np.float64)
    ref[:, 1:5] = np.clip(ref[:, 1:5] - S // 2, 0, S)
    w, h = ref[:, 3] - ref[:, 1], ref[:, 4] - ref[:, 2]
    w0, h0 = canvas_labels[:, 3] - canvas_labels[:, 1], canvas_labels[:, 4] - canvas_labels[:, 2]
    with np.errstate(divide="ignore"):
        keep = (w > 2) & (h > 2) & (w * h / (w0 * h0) > 0.1) & (np.maximum(w / h, h / w) < 100)
    assert 0 < keep.sum() < len(keep)  # some boxes survive the crop, some do not
    np.testing.assert_allclose(labels, ref[keep], rtol=0, atol=1e-5)


def test_mosaic4_augment_boxes_inside_and_seeded():
    hyp = dict(degrees=15, translate=0.2, scale=0.5, shear=5, perspective=0.0002)
    for seed in range(6):
        img, labels = mosaic4_augment(make_samples(seed), S, rng=np.random.default_rng(seed), **hyp)
        assert img.shape == (S, S, 3) and img.dtype == np.uint8
        assert_boxes_inside(img, labels)
    a = mosaic4_augment(make_samples(), S, rng=np.random.default_rng(4), **hyp)
    b = mosaic4_augment(make_samples(), S, rng=np.random.default_rng(4), **hyp)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_mosaic4_rejects_bad_samples():
    samples = make_samples()
    with pytest.raises(ValueError, match="exactly 4"):
        mosaic4(samples[:3], S, rng=np.random.default_rng(0))
    gray = [(np.zeros((8, 8), np.uint8), samples[0][1])] + samples[1:]
    with pytest.raises(ValueError, match="sample 0"):
        mosaic4(gray, S, rng=np.random.default_rng(0))
