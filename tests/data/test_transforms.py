"""Augmentation functions: YOLOv5 parity, boxes exact against independent float64 references, seeding."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from lightning_yolo.data.albument import YOLOV5_EXTRAS, AlbumentationsAugment, build_transform
from lightning_yolo.data.transforms import (
    as_labels,
    augment_hsv_to_rgb,
    box_candidates,
    empty_labels,
    fliplr,
    flipud,
    letterbox,
    letterbox_labels,
    mixup,
    random_flip,
    random_perspective,
    resize_to_imgsz,
    warp_image,
    warp_labels,
)

# ------------------------------------------------------------------------------------------------------ helpers


def rect_image(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Black BGR image with a white rectangle covering pixel columns x1..x2-1 and rows y1..y2-1."""
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def bright_extent(img: np.ndarray, thresh: int = 127) -> np.ndarray:
    """Pixel-edge xyxy box of the pixels brighter than ``thresh`` in channel 0."""
    ys, xs = np.nonzero(img[..., 0] > thresh)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def assert_boxes_inside(img: np.ndarray, labels: np.ndarray) -> None:
    h, w = img.shape[:2]
    assert labels.dtype == np.float32 and labels.ndim == 2 and labels.shape[1] == 5
    x1, y1, x2, y2 = labels[:, 1:5].T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all()
    assert (x2 > x1).all() and (y2 > y1).all()


def random_labels(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    xy = rng.uniform(0, [w - 4, h - 4], size=(n, 2))
    wh = rng.uniform(3, [w / 2, h / 2], size=(n, 2))
    x2y2 = np.minimum(xy + wh, [w, h])
    cls = rng.integers(0, 5, size=(n, 1))
    return np.concatenate((cls, xy, x2y2), axis=1).astype(np.float32)


def noise_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def corners_reference(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Enclosing box of the 4 corners of each box mapped by ``m`` (float64, one corner at a time)."""
    out = []
    for x1, y1, x2, y2 in boxes.astype(np.float64):
        pts = []
        for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2)):
            u, v, z = m @ np.array([x, y, 1.0])
            pts.append((u / z, v / z))
        pts = np.array(pts)
        out.append([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
    return np.array(out).reshape(-1, 4)


def yolov5_matrix(seed: int, src_hw, out_wh, degrees, translate, scale, shear, perspective):
    """The documented YOLOv5 warp ``T @ S @ R @ P @ C`` rebuilt from the same draws, written out by hand."""
    r = np.random.default_rng(seed)
    px, py = r.uniform(-perspective, perspective), r.uniform(-perspective, perspective)
    angle, s = math.radians(r.uniform(-degrees, degrees)), r.uniform(1 - scale, 1 + scale)
    shx = math.tan(math.radians(r.uniform(-shear, shear)))
    shy = math.tan(math.radians(r.uniform(-shear, shear)))
    tx = r.uniform(0.5 - translate, 0.5 + translate) * out_wh[0]
    ty = r.uniform(0.5 - translate, 0.5 + translate) * out_wh[1]
    c = np.array([[1, 0, -src_hw[1] / 2], [0, 1, -src_hw[0] / 2], [0, 0, 1]])
    p = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]])
    cos, sin = math.cos(angle) * s, math.sin(angle) * s
    rot = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])  # counter-clockwise on screen (y down)
    sh = np.array([[1, shx, 0], [shy, 1, 0], [0, 0, 1]])
    t = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    return t @ sh @ rot @ p @ c, s


# ------------------------------------------------------------------------------------------------- letterbox


def test_against_reference_letterbox_bus320(shared):
    ref = torch.load(shared / "reference" / "forward_yolov5n_bus320.pt", weights_only=True)
    img = cv2.imread(str(shared / "images" / "bus.jpg"))
    out, ratio, pad = letterbox(img, 320, auto=False)
    assert out.dtype == np.uint8
    assert list(img.shape[:2]) == list(ref["image_shape"])
    torch.testing.assert_close(torch.from_numpy(out), ref["letterbox_bgr"], rtol=0, atol=0)
    f64 = torch.float64
    torch.testing.assert_close(torch.tensor(ratio, dtype=f64), torch.tensor(ref["letterbox_ratio"], dtype=f64))
    torch.testing.assert_close(torch.tensor(pad, dtype=f64), torch.tensor(ref["letterbox_pad"], dtype=f64))


def test_letterbox_odd_padding_puts_extra_pixel_right_and_bottom():
    img = noise_image(np.random.default_rng(0), 10, 7)
    out, ratio, pad = letterbox(img, (13, 10), scaleup=False)
    assert out.shape == (13, 10, 3) and ratio == (1.0, 1.0) and pad == (1.5, 1.5)
    np.testing.assert_array_equal(out[1:11, 1:8], img)
    mask = np.ones(out.shape[:2], bool)
    mask[1:11, 1:8] = False
    assert (out[mask] == 114).all()


def test_letterbox_auto_pads_to_stride_multiple_only():
    out, ratio, pad = letterbox(np.zeros((100, 70, 3), np.uint8), 128, auto=True, stride=32)
    # r = 1.28, resized 90 x 128, width padded 90 -> 96
    assert out.shape == (128, 96, 3) and ratio == (1.28, 1.28) and pad == (3.0, 0.0)


def test_letterbox_scale_fill_stretches_per_axis():
    out, ratio, pad = letterbox(np.zeros((50, 20, 3), np.uint8), (40, 60), scale_fill=True)
    assert out.shape == (40, 60, 3) and ratio == (3.0, 0.8) and pad == (0.0, 0.0)


def test_letterbox_without_scaleup_only_pads():
    img = noise_image(np.random.default_rng(1), 20, 30)
    out, ratio, pad = letterbox(img, 64, scaleup=False)
    assert ratio == (1.0, 1.0) and pad == (17.0, 22.0)
    np.testing.assert_array_equal(out[22:42, 17:47], img)


def test_letterbox_keeps_boxes_exact():
    box = (3, 4, 9, 12)
    img = rect_image(20, 30, box)
    out, ratio, pad = letterbox(img, (40, 80))  # r = 2, resized 60 x 40, 10 px each side
    labels = letterbox_labels(np.array([[7, *box]], np.float32), ratio, pad)
    expected = np.array([[7, 3 * 2 + 10, 4 * 2, 9 * 2 + 10, 12 * 2]], np.float64)
    np.testing.assert_allclose(labels, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(bright_extent(out), expected[0, 1:], atol=1)
    assert_boxes_inside(out, labels)


def test_letterbox_labels_is_scale_then_shift():
    rng = np.random.default_rng(2)
    labels = random_labels(rng, 6, 50, 40)
    out = letterbox_labels(labels, (0.5, 0.25), (3.5, 7.0))
    ref = labels.astype(np.float64)
    ref[:, [1, 3]] = ref[:, [1, 3]] * 0.5 + 3.5
    ref[:, [2, 4]] = ref[:, [2, 4]] * 0.25 + 7.0
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    assert out.dtype == np.float32 and letterbox_labels(empty_labels(), (2, 2), (1, 1)).shape == (0, 5)


# -------------------------------------------------------------------------------------------- load-time resize


@pytest.mark.parametrize(("h0", "w0", "imgsz", "hw"), [(60, 147, 32, (14, 32)), (147, 60, 320, (320, 131))])
def test_resize_to_imgsz_long_side_and_ceil_short_side(h0, w0, imgsz, hw):
    # hw by hand: ceil(60 * 32 / 147) = ceil(13.06) = 14; ceil(60 * 320 / 147) = ceil(130.6) = 131
    img, hw0, new_hw = resize_to_imgsz(np.zeros((h0, w0, 3), np.uint8), imgsz, augment=True)
    assert hw0 == (h0, w0) and new_hw == hw and img.shape[:2] == hw


def test_resize_to_imgsz_interpolation_choice():
    img = noise_image(np.random.default_rng(3), 40, 20)
    area = cv2.resize(img, (10, 20), interpolation=cv2.INTER_AREA)
    linear = cv2.resize(img, (10, 20), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resize_to_imgsz(img, 20, augment=False)[0], area)
    np.testing.assert_array_equal(resize_to_imgsz(img, 20, augment=True)[0], linear)
    big = cv2.resize(img, (40, 80), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resize_to_imgsz(img, 80, augment=False)[0], big)
    same, _, hw = resize_to_imgsz(img, 40, augment=False)
    assert same is img and hw == (40, 20)


# ----------------------------------------------------------------------------------------------------- flips


def test_fliplr_and_flipud_keep_boxes_exact():
    box = (2, 3, 7, 11)
    img = rect_image(16, 12, box)
    labels = np.array([[1, *box]], np.float32)
    out, lab = fliplr(img, labels)
    np.testing.assert_array_equal(lab[0, 1:], bright_extent(out))
    np.testing.assert_array_equal(lab[0], [1, 12 - 7, 3, 12 - 2, 11])
    out, lab = flipud(img, labels)
    np.testing.assert_array_equal(lab[0, 1:], bright_extent(out))
    np.testing.assert_array_equal(lab[0], [1, 2, 16 - 11, 7, 16 - 3])
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(labels[0, 1:], box)  # the input is not modified


def test_flips_are_involutions():
    rng = np.random.default_rng(4)
    img, labels = noise_image(rng, 9, 13), random_labels(rng, 5, 13, 9)
    for flip in (fliplr, flipud):
        out, lab = flip(*flip(img, labels))
        np.testing.assert_array_equal(out, img)
        np.testing.assert_allclose(lab, labels, atol=1e-5)


def test_random_flip_probabilities_and_seed():
    rng = np.random.default_rng(5)
    img, labels = noise_image(rng, 9, 13), random_labels(rng, 3, 13, 9)
    out, lab = random_flip(img, labels, flipud_p=1.0, fliplr_p=1.0, rng=np.random.default_rng(0))
    ref_img, ref_lab = fliplr(*flipud(img, labels))
    np.testing.assert_array_equal(out, ref_img)
    np.testing.assert_array_equal(lab, ref_lab)
    out, lab = random_flip(img, labels, flipud_p=0.0, fliplr_p=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, img)
    runs = [random_flip(img, labels, 0.5, 0.5, rng=np.random.default_rng(s)) for s in (7, 7)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])


# ------------------------------------------------------------------------------------------ random perspective


def test_box_candidates_filtering():
    before = np.array([[0, 0, 10, 10]] * 5, np.float64)
    after = np.array(
        [
            [0, 0, 9, 9],  # kept
            [0, 0, 2, 9],  # width not > 2 px
            [0, 0, 3, 3],  # 9 % of the area
            [0, 0, 4, 4],  # 16 % of the area: kept
            [0, 0, 300, 2.5],  # aspect ratio 120
        ],
        np.float64,
    )
    np.testing.assert_array_equal(box_candidates(before, after), [True, False, False, True, False])
    np.testing.assert_array_equal(box_candidates(before, after, area_thr=0.05), [True, False, True, True, False])
    after[4] = [0, 0, 247.5, 2.5]  # aspect ratio 99, just under the limit of 100
    np.testing.assert_array_equal(box_candidates(before, after)[4], True)


def test_random_perspective_pure_translation_exact():
    box = (20, 12, 40, 25)  # stays inside for any translation within +-0.2
    img = rect_image(48, 64, box)
    labels = np.array([[3, *box]], np.float32)
    kw = dict(degrees=0, translate=0.2, scale=0, shear=0, perspective=0)
    out, lab = random_perspective(img, labels, **kw, rng=np.random.default_rng(11))
    m, _ = yolov5_matrix(11, (48, 64), (64, 48), **kw)
    tx, ty = m[0, 2], m[1, 2]
    assert np.allclose(m[:2, :2], np.eye(2)) and (tx, ty) != (0, 0)
    expected = np.array([box[0] + tx, box[1] + ty, box[2] + tx, box[3] + ty])
    np.testing.assert_allclose(lab[0, 1:], expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(bright_extent(out), expected, atol=1)
    assert_boxes_inside(out, lab)


def test_random_perspective_pure_scale_exact():
    box = (20, 16, 44, 40)
    img = rect_image(64, 64, box)
    labels = np.array([[0, *box]], np.float32)
    kw = dict(degrees=0, translate=0, scale=0.4, shear=0, perspective=0)
    out, lab = random_perspective(img, labels, **kw, rng=np.random.default_rng(12))
    _, s = yolov5_matrix(12, (64, 64), (64, 64), **kw)
    expected = (np.array(box, np.float64) - 32) * s + 32  # scaling about the image centre
    np.testing.assert_allclose(lab[0, 1:], expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(bright_extent(out), expected, atol=2)  # interpolated edges
    assert_boxes_inside(out, lab)


def test_warp_rotation_90_exact():
    n = 40
    box = (5, 8, 17, 30)
    img = rect_image(n, n, box)
    # 90 degrees about the centre of the pixel grid: pixel (x, y) -> (y, n - 1 - x), a pure permutation
    m = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, n - 1.0], [0.0, 0.0, 1.0]])
    out = warp_image(img, m, (n, n))
    np.testing.assert_array_equal(out, np.rot90(img))
    lab = warp_labels(np.array([[2, *box]], np.float32), m, (n, n))
    expected = [box[1], n - 1 - box[2], box[3], n - 1 - box[0]]
    np.testing.assert_allclose(lab[0, 1:], expected, rtol=0, atol=1e-5)
    # boxes use pixel edges and the image warp pixel centres: half a pixel each side, one pixel in all
    np.testing.assert_allclose(bright_extent(out), expected, atol=1)


def test_random_perspective_matches_corner_reference_and_stays_inside():
    kw = dict(degrees=30, translate=0.2, scale=0.5, shear=10, perspective=0.0005)
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        img, labels = noise_image(rng, 48, 64), random_labels(rng, 12, 64, 48)
        out, lab = random_perspective(img, labels, **kw, border=(-8, 4), rng=np.random.default_rng(seed))
        assert out.shape == (48 - 16, 64 + 8, 3) and out.dtype == np.uint8
        m, s = yolov5_matrix(seed, (48, 64), (72, 32), **kw)
        ref = corners_reference(labels[:, 1:], m)
        ref[:, [0, 2]] = ref[:, [0, 2]].clip(0, 72)
        ref[:, [1, 3]] = ref[:, [1, 3]].clip(0, 32)
        w0, h0 = (labels[:, 3] - labels[:, 1]) * s, (labels[:, 4] - labels[:, 2]) * s
        w1, h1 = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        with np.errstate(divide="ignore"):
            keep = (w1 > 2) & (h1 > 2) & (w1 * h1 / (w0 * h0) > 0.1) & (np.maximum(w1 / h1, h1 / w1) < 100)
        np.testing.assert_array_equal(lab[:, 0], labels[keep, 0])
        np.testing.assert_allclose(lab[:, 1:], ref[keep], rtol=0, atol=1e-3)
        assert_boxes_inside(out, lab)


def test_random_perspective_image_warp_matches_matrix():
    kw = dict(degrees=20, translate=0.1, scale=0.3, shear=5, perspective=0.0)
    img = noise_image(np.random.default_rng(6), 32, 40)
    out, _ = random_perspective(img, empty_labels(), **kw, rng=np.random.default_rng(3))
    m, _ = yolov5_matrix(3, (32, 40), (40, 32), **kw)
    ref = cv2.warpAffine(img, m[:2], (40, 32), borderValue=(114, 114, 114))
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_random_perspective_is_seeded_and_identity_when_ranges_are_zero():
    rng = np.random.default_rng(7)
    img, labels = noise_image(rng, 32, 32), random_labels(rng, 4, 32, 32)
    a = random_perspective(img, labels, rng=np.random.default_rng(1))
    b = random_perspective(img, labels, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    zero = dict(degrees=0, translate=0, scale=0, shear=0, perspective=0)
    out, lab = random_perspective(img, labels, **zero, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_allclose(lab, labels, atol=1e-5)


def test_random_perspective_drops_boxes_that_leave_the_image():
    img = rect_image(32, 32, (0, 0, 4, 4))
    labels = np.array([[0, 0, 0, 4, 4], [1, 10, 10, 20, 20]], np.float32)
    # a border of -8 crops 8 px from each side, so the corner box is gone and the other shifts by -8
    kw = dict(degrees=0, translate=0, scale=0, shear=0, perspective=0)
    out, lab = random_perspective(img, labels, **kw, border=(-8, -8), rng=np.random.default_rng(0))
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(lab, [[1, 2, 2, 12, 12]], atol=1e-5)


# --------------------------------------------------------------------------------------------------- colour


@pytest.mark.parametrize("gains", [(0.015, 0.7, 0.4), (0.5, 0.5, 0.5)])
def test_augment_hsv_matches_the_per_pixel_formula_in_rgb(gains):
    img = noise_image(np.random.default_rng(8), 12, 10)
    original = img.copy()
    out = augment_hsv_to_rgb(img, *gains, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(img, original)  # a new array; the input is untouched
    assert out.shape == img.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    g = np.random.default_rng(9).uniform(-1, 1, 3) * gains + 1
    hsv = cv2.cvtColor(original, cv2.COLOR_BGR2HSV).astype(np.float64)
    hsv[..., 0] = np.floor(hsv[..., 0] * g[0]) % 180
    hsv[..., 1] = np.floor(np.clip(hsv[..., 1] * g[1], 0, 255))
    hsv[..., 2] = np.floor(np.clip(hsv[..., 2] * g[2], 0, 255))
    bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)  # YOLOv5's augment_hsv result
    np.testing.assert_array_equal(out, bgr[..., ::-1])
    assert (out != original[..., ::-1]).any()


def test_augment_hsv_zero_gains_and_seed():
    img = noise_image(np.random.default_rng(10), 8, 8)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(augment_hsv_to_rgb(img, 0, 0, 0, rng=rng), img[..., ::-1])  # only BGR -> RGB
    assert rng.random() == np.random.default_rng(0).random()  # nothing drawn
    a = augment_hsv_to_rgb(img, rng=np.random.default_rng(5))
    b = augment_hsv_to_rgb(img, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_mixup_ratio_and_labels():
    img1, img2 = np.full((4, 4, 3), 200, np.uint8), np.zeros((4, 4, 3), np.uint8)
    l1, l2 = np.array([[0, 0, 0, 2, 2]], np.float32), np.array([[1, 1, 1, 3, 3], [2, 0, 1, 4, 3]], np.float32)
    ratios = []
    for seed in range(200):
        out, lab = mixup(img1, l1, img2, l2, rng=np.random.default_rng(seed))
        r = np.random.default_rng(seed).beta(32, 32)
        assert (out == np.uint8(200 * r)).all()
        ratios.append(r)
    np.testing.assert_array_equal(lab, np.concatenate((l1, l2)))
    assert 0.25 < min(ratios) and max(ratios) < 0.75 and abs(np.mean(ratios) - 0.5) < 0.02
    with pytest.raises(ValueError, match="equal shape"):
        mixup(img1, l1, np.zeros((4, 5, 3), np.uint8), l2, rng=np.random.default_rng(0))


def test_as_labels_validates_shape():
    assert as_labels(np.zeros((0,))).shape == (0, 5)
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        as_labels(np.zeros((3, 4)))


# --------------------------------------------------------------------------------------------- albumentations


def test_albumentations_unknown_name_is_a_clear_error():
    for name in ("NoSuchTransform", "Compose", "__version__", "BboxParams", 3):
        with pytest.raises(ValueError, match="unknown albumentations transform"):
            build_transform({"name": name})
    with pytest.raises(ValueError, match="unknown argument"):
        build_transform({"name": "Blur", "p": 0.5, "blurr_limit": 3})
    with pytest.raises(ValueError, match="invalid arguments"):
        build_transform({"name": "Blur", "blur_limit": "x"})
    with pytest.raises(ValueError, match="'name'"):
        AlbumentationsAugment([{"p": 0.5}])


def test_albumentations_extras_are_yolov5s_and_pixel_only():
    aug = AlbumentationsAugment()
    assert [type(t).__name__ for t in aug.transforms] == ["Blur", "MedianBlur", "ToGray", "CLAHE"]
    assert [t.p for t in aug.transforms] == [0.01] * 4 and not aug.spatial
    assert len(YOLOV5_EXTRAS) == 4


def test_albumentations_seeded_and_labels_untouched_by_pixel_transforms():
    rng = np.random.default_rng(13)
    img, labels = noise_image(rng, 24, 32), random_labels(rng, 3, 32, 24)
    aug = AlbumentationsAugment([{"name": "RandomBrightnessContrast", "p": 1.0}, {"name": "Blur", "p": 0.5}])
    outs = [aug(img, labels, rng=np.random.default_rng(s)) for s in (1, 1, 2)]
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert (outs[0][0] != outs[2][0]).any() and (outs[0][0] != img).any()
    np.testing.assert_array_equal(outs[0][1], labels)


def test_albumentations_spatial_transform_moves_boxes():
    rng = np.random.default_rng(14)
    img, labels = noise_image(rng, 24, 32), random_labels(rng, 4, 32, 24)
    aug = AlbumentationsAugment([{"name": "HorizontalFlip", "p": 1.0}], yolov5_extras=False)
    out, lab = aug(img, labels, rng=np.random.default_rng(0))
    ref_img, ref_lab = fliplr(img, labels)
    np.testing.assert_array_equal(out, ref_img)
    np.testing.assert_allclose(lab, ref_lab, atol=1e-4)
    out, lab = aug(img, empty_labels(), rng=np.random.default_rng(0))
    assert lab.shape == (0, 5)
    crop = AlbumentationsAugment([{"name": "RandomCrop", "height": 16, "width": 16, "p": 1.0}], yolov5_extras=False)
    out, lab = crop(img, labels, rng=np.random.default_rng(3))
    assert out.shape == (16, 16, 3)
    assert_boxes_inside(out, lab)
