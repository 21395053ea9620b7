"""Four-image mosaic: YOLOv5's draws, tile placement, exact boxes, clipping, centre range, seeding, replacements."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lightning_yolo.data.mosaic import MosaicPlan, load_mosaic, render_mosaic, sample_mosaic_center

S = 32
SIZES = [(32, 20), (18, 32), (25, 27), (32, 32)]  # (h, w) per tile, long side = S as after resize_to_imgsz
NO_WARP = dict(degrees=0, translate=0, scale=0, shear=0, perspective=0)
WARP = dict(degrees=15, translate=0.2, scale=0.5, shear=5, perspective=0.0002)


def make_tiles(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Noise tiles, each with a box in the middle and one touching its top-left corner."""
    rng = np.random.default_rng(seed)
    tiles = []
    for i, (h, w) in enumerate(SIZES):
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        labels = np.array([[i, w * 0.25, h * 0.25, w * 0.75, h * 0.75], [i + 10, 0, 0, 5, 6]], np.float32)
        tiles.append((img, labels))
    return tiles


class Tiles:
    """A tile source over fixed tiles, as the dataset is one; ``replace`` maps an unreadable index to its stand-in."""

    def __init__(self, tiles: list, replace: dict[int, int] | None = None) -> None:
        self.tiles, self.replace, self.loads = tiles, replace or {}, []

    def __len__(self) -> int:
        return len(self.tiles)

    def tile_hw(self, index: int) -> tuple[int, int]:
        return self.tiles[index][0].shape[:2]

    def load_tile(self, index: int, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        self.loads.append(index)
        used = self.replace.get(index, index)
        return used, *self.tiles[used]


def yolov5_draws(seed: int, index: int, n: int) -> tuple[list[int], tuple[int, int]]:
    """Tile order and centre as YOLOv5 draws them: 3 random indices, a shuffle of all 4, then ``yc`` and ``xc``."""
    rng = np.random.default_rng(seed)
    order = [index, *(int(i) for i in rng.integers(n, size=3))]
    rng.shuffle(order)
    yc = int(rng.uniform(S // 2, 2 * S - S // 2))
    xc = int(rng.uniform(S // 2, 2 * S - S // 2))
    return order, (xc, yc)


def window_plan(center: tuple[int, int], matrix: np.ndarray) -> MosaicPlan:
    """A plan with a chosen centre and canvas-to-output warp (scale 1), warped with warpAffine."""
    return MosaicPlan(S, center, matrix, 1.0, None)


def shift(x: float, y: float) -> np.ndarray:
    """The warp whose output is the canvas window starting at ``(x, y)``."""
    return np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0.0, 0.0, 1.0]])


def assert_boxes_inside(img: np.ndarray, labels: np.ndarray) -> None:
    h, w = img.shape[:2]
    assert labels.dtype == np.float32 and labels.shape[1] == 5
    x1, y1, x2, y2 = labels[:, 1:5].T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
    assert (x2 > x1).all() and (y2 > y1).all()


@pytest.mark.parametrize("snap", [False, True])
def test_mosaic_without_warp_is_the_centre_of_its_canvas(snap: bool, mosaic_canvas) -> None:
    kept = dropped = 0
    for seed in range(8):
        tiles = make_tiles(seed)
        used, img, labels = load_mosaic(Tiles(tiles), 1, np.random.default_rng(seed), S, NO_WARP, snap=snap)
        order, center = yolov5_draws(seed, 1, len(tiles))
        canvas, canvas_labels = mosaic_canvas([tiles[i] for i in order], center, S)
        lo = S // 2  # the output is the canvas window [s/2, 3s/2)
        assert used == 1 and img.shape == (S, S, 3)
        np.testing.assert_array_equal(img, canvas[lo : lo + S, lo : lo + S])
        ref = canvas_labels.copy()
        ref[:, 1:5] = np.clip(ref[:, 1:5] - lo, 0, S)
        w, h = ref[:, 3] - ref[:, 1], ref[:, 4] - ref[:, 2]
        w0, h0 = canvas_labels[:, 3] - canvas_labels[:, 1], canvas_labels[:, 4] - canvas_labels[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = (w > 2) & (h > 2) & (w * h / (w0 * h0) > 0.1) & (np.maximum(w / h, h / w) < 100)
        np.testing.assert_allclose(labels, ref[keep], rtol=0, atol=1e-5)
        kept, dropped = kept + keep.sum(), dropped + (~keep).sum()
    assert kept > 0 and dropped > 0  # some boxes survive the window, some do not


@pytest.mark.parametrize("center", [(32, 32), (16, 47), (47, 16), (20, 40)])
def test_tiles_meet_at_the_centre_pixel_exact(center: tuple[int, int], mosaic_canvas) -> None:
    tiles = make_tiles()
    full = [(img, labels, img.shape[:2]) for img, labels in tiles]
    quadrants = [[render_mosaic(window_plan(center, shift(x, y)), full)[0] for x in (0, S)] for y in (0, S)]
    canvas = np.concatenate([np.concatenate(row, axis=1) for row in quadrants], axis=0)
    np.testing.assert_array_equal(canvas, mosaic_canvas(tiles, center, S)[0])


def test_each_box_matches_its_rectangle_in_the_output() -> None:
    h, w = 20, 30
    tiles = []
    for i in range(4):
        img = np.zeros((h, w, 3), np.uint8)
        img[5:15, 8:20] = 60 * (i + 1)  # rectangle covering pixel-edge box [8, 5, 20, 15]
        tiles.append((img, np.array([[i, 8, 5, 20, 15]], np.float32), (h, w)))
    # centre (33, 31), output = canvas window from (16, 16): every rectangle is partly shown, cut by the window
    out, labels = render_mosaic(window_plan((33, 31), shift(S // 2, S // 2)), tiles)
    assert sorted(labels[:, 0].tolist()) == [0, 1, 2, 3]
    for i in range(4):
        ys, xs = np.nonzero(out[..., 0] == 60 * (i + 1))
        extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_array_equal(labels[labels[:, 0] == i, 1:], [extent])


def test_boxes_cut_off_the_canvas_are_dropped_before_a_rotation_inflates_them() -> None:
    tiles = [(img, labels, img.shape[:2]) for img, labels in make_tiles()]
    # centre (16, 16): tile 2 (25 x 27) starts at (-11, 16), so its corner box [0, 0, 5, 6] moves to
    # [-11, 16, -6, 22], which the canvas cuts to the line [0, 16, 0, 22]. Turned 45 degrees about (0, 19) onto
    # the output's centre, that line would become a 4 x 4 box that passes every size and area check.
    matrix = np.eye(3)
    matrix[:2] = cv2.getRotationMatrix2D((0.0, 19.0), 45, 1.0)
    matrix[:2, 2] += (16.0, -3.0)
    _, labels = render_mosaic(window_plan((16, 16), matrix), tiles)
    assert 12 not in labels[:, 0] and 10 not in labels[:, 0]  # tile 0's corner box is cut off at the top as well
    assert 2 in labels[:, 0]  # the tile itself is shown, with its middle box


def test_mosaic_center_range() -> None:
    centers = np.array([sample_mosaic_center(S, np.random.default_rng(seed)) for seed in range(300)])
    assert centers.min() >= S // 2 and centers.max() < 3 * S // 2 and centers.dtype.kind == "i"
    assert centers.min() <= S // 2 + 2 and centers.max() >= 3 * S // 2 - 3  # the whole range is used


@pytest.mark.parametrize("snap", [False, True])
def test_warped_mosaic_boxes_lie_inside_and_a_seed_reproduces_it(snap: bool) -> None:
    for seed in range(6):
        _, img, labels = load_mosaic(Tiles(make_tiles(seed)), 0, np.random.default_rng(seed), S, WARP, snap=snap)
        assert img.shape == (S, S, 3) and img.dtype == np.uint8
        assert_boxes_inside(img, labels)
    a = load_mosaic(Tiles(make_tiles()), 2, np.random.default_rng(4), S, WARP, snap=snap)
    b = load_mosaic(Tiles(make_tiles()), 2, np.random.default_rng(4), S, WARP, snap=snap)
    c = load_mosaic(Tiles(make_tiles()), 2, np.random.default_rng(5), S, WARP, snap=snap)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[1], c[1])


def test_an_unreadable_image_is_reported_by_the_index_that_replaced_it() -> None:
    def shows_image_0_once(seed: int) -> bool:
        order, center = yolov5_draws(seed, 0, 4)
        return order.count(0) == 1 and all(S // 2 + 2 <= c < 3 * S // 2 - 2 for c in center)  # every tile shown

    seed = next(s for s in range(100) if shows_image_0_once(s))
    source = Tiles(make_tiles(), replace={0: 3})
    used, img, labels = load_mosaic(source, 0, np.random.default_rng(seed), S, NO_WARP, snap=True)
    assert sorted(source.loads) == sorted(yolov5_draws(seed, 0, 4)[0]) and used == 3
    assert_boxes_inside(img, labels)
