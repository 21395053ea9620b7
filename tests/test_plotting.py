"""Run plots: every function writes its file, at YOLOv5's size where YOLOv5's is fixed (figure inches x dpi)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from lightning_yolo.evaluation.ap import box_filter
from lightning_yolo.plots import (
    RESULT_COLUMNS,
    class_color,
    plot_confusion_matrix,
    plot_images,
    plot_labels,
    plot_mc_curve,
    plot_pr_curve,
    plot_results,
    predictions_to_targets,
)
from lightning_yolo.plots.results import gaussian_smooth, read_results_csv

PX = np.linspace(0, 1, 1000)


def _size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        return im.size  # (width, height)


def _random_labels(n: int, nc: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.integers(0, nc, (n, 1)), rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(0.02, 0.3, (n, 2))], 1
    )


# --- labels.jpg, labels_correlogram.jpg ---


def test_plot_labels_writes_both_images_at_yolov5_sizes(tmp_path):
    paths = plot_labels(_random_labels(200, 3), ["person", "car", "dog"], tmp_path / "run")
    assert [p.name for p in paths] == ["labels.jpg", "labels_correlogram.jpg"]
    assert _size(paths[0]) == (1600, 1600)  # 8x8 in at 200 dpi
    assert _size(paths[1]) == (2000, 2000)  # 4 panels of 2.5 in at 200 dpi


@pytest.mark.parametrize("labels", [np.zeros((0, 5)), torch.tensor([[0, 0.5, 0.5, 0.2, 0.2]])])
def test_plot_labels_survives_empty_and_single_label_sets(tmp_path, labels):
    paths = plot_labels(labels, {0: "person"}, tmp_path)
    assert all(_size(p)[0] > 0 for p in paths)


def test_plot_labels_with_many_classes_and_no_names(tmp_path):
    paths = plot_labels(_random_labels(100, 80), None, tmp_path)
    assert _size(paths[0]) == (1600, 1600)


# --- batch mosaics ---


def _solid_batch(colors: list[tuple[int, int, int]], h: int = 64, w: int = 64) -> np.ndarray:
    return np.stack([np.broadcast_to(np.array(c, np.uint8)[:, None, None], (3, h, w)) for c in colors]).copy()


def test_plot_images_tiles_fill_columns_first_and_keep_rgb(tmp_path):
    batch = _solid_batch([(255, 0, 0), (0, 255, 0), (0, 0, 255)])  # RGB red, green, blue
    path = plot_images(torch.from_numpy(batch), None, fname=tmp_path / "train_batch0.jpg")
    mosaic = cv2.imread(str(path))[:, :, ::-1]  # RGB
    assert mosaic.shape == (128, 128, 3)  # 2x2 grid of 64 px tiles
    centre = {name: mosaic[y, x] for name, (x, y) in {"tl": (32, 32), "bl": (32, 96), "tr": (96, 32)}.items()}
    np.testing.assert_allclose(centre["tl"], [255, 0, 0], atol=40)
    np.testing.assert_allclose(centre["bl"], [0, 255, 0], atol=40)  # image 1 below image 0, as YOLOv5
    np.testing.assert_allclose(centre["tr"], [0, 0, 255], atol=40)
    np.testing.assert_allclose(mosaic[96, 96], [255, 255, 255], atol=10)  # unused tile stays white


def test_plot_images_with_an_empty_target_array(tmp_path):
    batch = _solid_batch([(90, 90, 90)] * 2)
    for targets in (np.zeros((0, 6)), torch.zeros(0, 6), np.zeros(0)):
        assert _size(plot_images(batch, targets, paths=["a/b.jpg", "c.jpg"], fname=tmp_path / "x.jpg")) == (128, 128)


def test_plot_images_draws_labels_and_only_confident_predictions(tmp_path):
    batch = _solid_batch([(90, 90, 90)])
    plain = cv2.imread(str(plot_images(batch, None, fname=tmp_path / "plain.png")))
    box = [0, 0, 0.5, 0.5, 0.5, 0.5]
    labelled = cv2.imread(str(plot_images(batch, np.array([box]), fname=tmp_path / "labels.png")))
    weak = cv2.imread(str(plot_images(batch, np.array([[*box, 0.2]]), fname=tmp_path / "weak.png")))
    strong = cv2.imread(str(plot_images(batch, np.array([[*box, 0.9]]), fname=tmp_path / "strong.png")))
    np.testing.assert_array_equal(weak, plain)  # YOLOv5 hides predictions at or below 0.25 confidence
    assert (labelled != plain).any() and (strong != plain).any()
    left_edge = labelled[32, 16]  # box [16, 16, 48, 48] px: its left side in class 0's colour (BGR)
    np.testing.assert_allclose(left_edge, class_color(0, bgr=True), atol=40)


def test_plot_images_accepts_pixel_boxes_and_float_images(tmp_path):
    batch = _solid_batch([(90, 90, 90)]).astype(np.float32) / 255
    normalised = np.array([[0, 1, 0.5, 0.5, 0.5, 0.5]])
    pixels = normalised * [1, 1, 64, 64, 64, 64]
    a = cv2.imread(str(plot_images(batch, normalised, fname=tmp_path / "n.png")))
    b = cv2.imread(str(plot_images(batch, pixels, fname=tmp_path / "p.png")))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[5, 5], [90, 90, 90], atol=2)  # floats in [0, 1] are scaled back to 0-255


def test_predictions_to_targets_gives_image_index_class_xywh_conf():
    preds = [torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.9, 2.0]]), torch.zeros(0, 6), np.array([[0, 0, 4, 4, 0.5, 1]])]
    targets = predictions_to_targets(preds)
    np.testing.assert_allclose(targets, [[0, 2, 20, 40, 20, 40, 0.9], [2, 1, 2, 2, 4, 4, 0.5]])
    assert predictions_to_targets([]).shape == (0, 7)
    assert len(predictions_to_targets([torch.rand(5, 6)], max_det=3)) == 3


def test_plot_images_shrinks_large_batches_to_max_size(tmp_path):
    batch = np.zeros((20, 3, 8, 8), np.uint8)  # only 16 images drawn: 4x4 grid
    assert _size(plot_images(batch, None, fname=tmp_path / "a.jpg")) == (32, 32)
    big = np.zeros((2, 3, 1280, 640), np.uint8)  # 2x2 grid, long side 1280 -> 1920 / 2 = 960
    assert _size(plot_images(big, None, fname=tmp_path / "b.jpg", max_size=1920)) == (960, 1920)


def test_plot_images_rejects_an_empty_batch(tmp_path):
    with pytest.raises(ValueError):
        plot_images(np.zeros((0, 3, 8, 8), np.uint8), None, fname=tmp_path / "a.jpg")


# --- curves and confusion matrix ---


@pytest.mark.parametrize("nc", [0, 3, 25])
def test_plot_pr_curve_writes_2250x1500(tmp_path, nc):
    py = np.array([1 - PX ** (i + 2) for i in range(nc)]).reshape(nc, 1000)
    ap = np.linspace(0.2, 0.8, nc * 10).reshape(nc, 10)
    path = plot_pr_curve(PX, py, ap, [f"c{i}" for i in range(nc)], tmp_path / "PR_curve.png")
    assert path.name == "PR_curve.png" and _size(path) == (2250, 1500)  # 9x6 in at 250 dpi


@pytest.mark.parametrize(
    ("file", "ylabel"), [("F1_curve.png", "F1"), ("P_curve.png", "Precision"), ("R_curve.png", "Recall")]
)
def test_plot_mc_curve_writes_2250x1500(tmp_path, file, ylabel):
    py = torch.stack([torch.sin(torch.from_numpy(PX) * torch.pi) * s for s in (0.5, 0.7, 0.9)])
    path = plot_mc_curve(PX, py, {0: "a", 1: "b", 2: "c"}, tmp_path / file, ylabel=ylabel)
    assert _size(path) == (2250, 1500)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix_nc3_writes_3000x2250(tmp_path, normalize):
    matrix = np.array([[5, 1, 0, 2], [0, 7, 1, 0], [1, 0, 4, 3], [2, 1, 0, 0]], float)  # (nc + 1, nc + 1)
    path = plot_confusion_matrix(matrix, ["person", "car", "dog"], tmp_path / "confusion_matrix.png", normalize)
    assert _size(path) == (3000, 2250)  # 12x9 in at 250 dpi


def test_plot_confusion_matrix_all_zero_and_mismatched_names(tmp_path):
    path = plot_confusion_matrix(torch.zeros(4, 4), ["only one name"], tmp_path / "cm.png")
    assert _size(path) == (3000, 2250)


def test_smooth_keeps_length_and_constants():
    y = np.full(1000, 0.3)
    np.testing.assert_allclose(box_filter(y, 0.05), y)
    assert len(box_filter(np.random.default_rng(0).random(1000))) == 1000


# --- results.png ---


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_plot_results_from_three_rows_with_yolov5_padded_header(tmp_path):
    header = [f"{name:>20}" for name in ("epoch", *RESULT_COLUMNS, "x/lr0")]
    rows = [[e, *np.linspace(0.1, 1.0, 10) / (e + 1), 0.01] for e in range(3)]
    path = plot_results(_write_csv(tmp_path / "results.csv", header, rows))
    assert path == tmp_path / "results.png" and _size(path) == (2400, 1200)  # 12x6 in at 200 dpi


def test_plot_results_tolerates_missing_columns_blank_cells_and_no_epoch(tmp_path):
    header = ["train/box_loss", "metrics/mAP_0.5", "something_else"]
    rows = [[0.1, "", "x"], [0.09, 0.2, "y"], [0.08, 0.3, ""]]
    path = plot_results(_write_csv(tmp_path / "results.csv", header, rows), tmp_path / "out" / "r.png")
    assert _size(path) == (2400, 1200)
    data = read_results_csv(tmp_path / "results.csv")
    np.testing.assert_array_equal(np.isnan(data["metrics/mAP_0.5"]), [True, False, False])


def test_plot_results_with_header_only(tmp_path):
    path = plot_results(_write_csv(tmp_path / "results.csv", ["epoch", *RESULT_COLUMNS], []))
    assert _size(path) == (2400, 1200)


def test_gaussian_smooth_matches_a_truncated_gaussian_kernel():
    impulse = np.zeros(41)
    impulse[20] = 1.0
    offsets = np.arange(-12, 13)  # truncated at 4 sigma for sigma 3
    kernel = np.exp(-(offsets**2) / 18)
    np.testing.assert_allclose(gaussian_smooth(impulse, 3.0)[8:33], kernel / kernel.sum())
    np.testing.assert_allclose(gaussian_smooth(np.full(3, 2.0)), 2.0)  # mirrored edges keep a constant constant


def test_plotting_leaves_matplotlib_global_state_alone(tmp_path):
    backend, params = matplotlib.get_backend(), dict(matplotlib.rcParams)
    plot_mc_curve(PX, np.ones((1, 1000)), None, tmp_path / "F1_curve.png")
    assert matplotlib.get_backend() == backend and dict(matplotlib.rcParams) == params
