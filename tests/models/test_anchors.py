"""AutoAnchor algorithms: the ratio metric, label sizes, k-means + evolution, order check, the keep/adopt decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_yolo.models.anchors import (
    AnchorReport,
    anchor_fitness,
    check_anchor_order,
    check_anchors,
    kmean_anchors,
    label_wh,
)

YOLOV5N_ANCHORS_PX = torch.tensor(
    [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]], dtype=torch.float32
).view(3, 3, 2)
STRIDES = torch.tensor([8.0, 16.0, 32.0])


def _coco128_shapes_and_labels(root: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Image [w, h] (EXIF-rotated) and de-duplicated label rows of every coco128 image, read directly."""
    shapes, labels = [], []
    for image_path in sorted((root / "images" / "train2017").glob("*.jpg")):
        with Image.open(image_path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees when displayed
                w, h = h, w
        shapes.append((w, h))
        label_path = root / "labels" / "train2017" / f"{image_path.stem}.txt"
        rows = np.zeros((0, 5), np.float32)
        if label_path.is_file() and label_path.stat().st_size:
            rows = np.unique(np.loadtxt(label_path, ndmin=2, dtype=np.float32), axis=0)
        labels.append(rows)
    return np.array(shapes, np.float64), labels


@pytest.fixture(scope="module")
def coco128(shared: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    return _coco128_shapes_and_labels(shared / "data" / "coco128")


def test_anchor_fitness_on_hand_built_labels():
    anchors = [[10, 10], [20, 40]]
    # Per label, fit x to each anchor (thr 4 -> fits when x > 0.25):
    # (10,10): 1.0, 0.25 -> 1 fit | (40,40): 0.25, 0.5 -> 1 | (100,10): 0.1, 0.2 -> 0 | (5,5): 0.5, 0.125 -> 1
    # (14,20): 0.5, 0.5 -> 2. So 4 of 5 labels fit something; 5 fits over 5 labels.
    wh = [[10, 10], [40, 40], [100, 10], [5, 5], [14, 20]]
    bpr, aat = anchor_fitness(anchors, wh, thr=4.0)
    assert bpr == pytest.approx(0.8)
    assert aat == pytest.approx(1.0)


def test_anchor_fitness_accepts_level_shaped_tensors():
    bpr, aat = anchor_fitness(YOLOV5N_ANCHORS_PX, torch.tensor([[10.0, 13.0]]))
    assert bpr == 1.0
    assert aat == pytest.approx(3.0)  # fits 10x13, 16x30 (ratio 0.43) and 33x23 (0.30) at thr 4


def test_label_wh_scales_long_side_to_imgsz():
    shapes = [[640, 480], [100, 200]]
    labels = [
        np.array([[0, 0.5, 0.5, 0.5, 0.5]]),
        np.array([[1, 0.5, 0.5, 0.25, 1.0]]),
    ]
    wh = label_wh(shapes, labels, imgsz=320, jitter=None)
    np.testing.assert_allclose(wh, [[160, 120], [40, 320]])
    assert wh.dtype == np.float32


def test_label_wh_jitter_is_one_scale_per_image_and_seeded():
    shapes = [[640, 640], [640, 640]]
    labels = [np.array([[0, 0.5, 0.5, 0.5, 0.25], [0, 0.5, 0.5, 0.25, 0.25]]), np.zeros((0, 5))]
    exact = label_wh(shapes, labels, 640, jitter=None)
    a = label_wh(shapes, labels, 640, rng=np.random.default_rng(3))
    b = label_wh(shapes, labels, 640, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    factor = a / exact
    assert np.allclose(factor, factor[0, 0]) and 0.9 <= factor[0, 0] <= 1.1


def test_label_wh_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        label_wh([[10, 10]], [], 640)


def test_kmean_anchors_finds_well_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[12.0, 16.0], [60.0, 40.0], [200.0, 300.0]])
    wh = np.concatenate([c * rng.uniform(0.97, 1.03, size=(50, 2)) for c in centres])
    anchors = kmean_anchors(wh, n=3, gen=0, rng=np.random.default_rng(1))
    np.testing.assert_allclose(anchors, centres, rtol=0.02)
    assert anchors.dtype == np.float32


def test_kmean_anchors_same_seed_same_anchors_sorted_by_area():
    wh = np.random.default_rng(0).uniform(4, 300, size=(200, 2))
    a = kmean_anchors(wh, n=9, gen=100, rng=np.random.default_rng(7))
    b = kmean_anchors(wh, n=9, gen=100, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    area = a.prod(1)
    assert a.shape == (9, 2) and np.all(np.diff(area) >= 0) and np.all(a >= 2.0)


@pytest.mark.parametrize("wh", [np.full((20, 2), 30.0), np.array([[30.0, 40.0], [50.0, 20.0]])])
def test_kmean_anchors_falls_back_to_random_init_when_clusters_are_impossible(wh):
    anchors = kmean_anchors(wh, n=9, img_size=320, gen=50, rng=np.random.default_rng(0))
    assert anchors.shape == (9, 2) and np.isfinite(anchors).all()


def test_check_anchor_order_flips_levels_that_shrink_with_stride():
    reversed_anchors = YOLOV5N_ANCHORS_PX.flip(0)
    torch.testing.assert_close(check_anchor_order(reversed_anchors, STRIDES), YOLOV5N_ANCHORS_PX)
    torch.testing.assert_close(check_anchor_order(YOLOV5N_ANCHORS_PX, STRIDES), YOLOV5N_ANCHORS_PX)


def test_check_anchors_keeps_good_anchors():
    wh = YOLOV5N_ANCHORS_PX.view(-1, 2) * 1.1
    report = check_anchors(YOLOV5N_ANCHORS_PX / STRIDES.view(-1, 1, 1), STRIDES, wh)
    assert report == AnchorReport(1.0, report.aat, None, None)
    assert "good fit" in report.summary()


def test_check_anchors_keeps_anchors_when_there_are_no_labels():
    report = check_anchors(YOLOV5N_ANCHORS_PX / STRIDES.view(-1, 1, 1), STRIDES, np.zeros((0, 2)))
    assert report.new_anchors is None and report.new_bpr is None
    assert "no labels" in report.summary()


def test_check_anchors_evolves_bad_anchors_on_synthetic_labels():
    rng = np.random.default_rng(0)
    size, aspect = np.exp(rng.uniform(np.log(8), np.log(400), 300)), np.exp(rng.uniform(-1, 1, 300))
    wh = np.stack([size * aspect, size / aspect], 1)  # (300, 2) boxes of many sizes, aspect ratios within e^2
    bad_grid = torch.full((3, 3, 2), 2.0) / STRIDES.view(-1, 1, 1)
    report = check_anchors(bad_grid, STRIDES, wh, gen=300, rng=np.random.default_rng(0))
    assert report.bpr < 0.1 and report.new_anchors is not None and report.new_bpr > 0.98
    new_px = report.new_anchors * STRIDES.view(-1, 1, 1)
    assert anchor_fitness(new_px, wh)[0] == pytest.approx(report.new_bpr)
    level_area = new_px.prod(-1).mean(-1)
    assert torch.all(level_area[1:] > level_area[:-1])  # small anchors on the fine P3 level


def test_against_yolov5_metric_on_coco128_at_640(coco128):
    # 4.26 anchors/target and BPR 0.9946, measured with upstream YOLOv5's check_anchors without scale jitter.
    wh = label_wh(*coco128, imgsz=640, jitter=None)
    assert len(wh) == 929
    bpr, aat = anchor_fitness(YOLOV5N_ANCHORS_PX, wh)
    assert round(aat, 2) == 4.26
    assert round(bpr, 4) == 0.9946


def test_against_yolov5_metric_on_coco128_at_320(coco128):
    wh = label_wh(*coco128, imgsz=320, jitter=None)
    bpr, aat = anchor_fitness(YOLOV5N_ANCHORS_PX, wh)
    assert round(aat, 2) == 3.98
    assert round(bpr, 4) == 0.9623


@pytest.mark.parametrize("bad_px", [2.0, 1000.0])
def test_check_anchors_evolves_bad_anchors_above_098_on_coco128(coco128, bad_px):
    wh = label_wh(*coco128, imgsz=640, jitter=None)
    bad_grid = torch.full((3, 3, 2), bad_px) / STRIDES.view(-1, 1, 1)
    first = check_anchors(bad_grid, STRIDES, wh, gen=1000, rng=np.random.default_rng(0))
    again = check_anchors(bad_grid, STRIDES, wh, gen=1000, rng=np.random.default_rng(0))
    assert first.bpr < 0.1 and first.new_bpr > 0.98
    torch.testing.assert_close(first.new_anchors, again.new_anchors, rtol=0, atol=0)
    assert "New anchors adopted" in first.summary()
