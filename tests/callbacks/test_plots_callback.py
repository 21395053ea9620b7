"""RunPlots on a real short fit: every YOLOv5 picture is written, with the sizes and contents that can be checked."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

slow = pytest.mark.slow  # the shared fit of conftest.py (one fit, one resumption, one validate in total)

# (width, height) in pixels, as YOLOv5 writes them (figure inches x dpi)
FIXED_SIZES = {
    "labels.jpg": (1600, 1600),
    "labels_correlogram.jpg": (2000, 2000),
    "PR_curve.png": (2250, 1500),
    "F1_curve.png": (2250, 1500),
    "P_curve.png": (2250, 1500),
    "R_curve.png": (2250, 1500),
    "confusion_matrix.png": (3000, 2250),
    "results.png": (2400, 1200),
}
BATCH_PICTURES = [f"train_batch{i}.jpg" for i in range(3)] + [
    f"val_batch{i}_{kind}.jpg" for i in range(3) for kind in ("labels", "pred")
]


def _read(path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path.name} cannot be read"
    return image


@slow
def test_fit_writes_every_picture_with_content(callback_run):
    for name in [*FIXED_SIZES, *BATCH_PICTURES]:
        image = _read(callback_run.run_dir / name)
        assert image.std() > 1, f"{name} is blank"


@slow
@pytest.mark.parametrize("name", list(FIXED_SIZES))
def test_picture_sizes_match_yolov5(callback_run, name):
    h, w = _read(callback_run.run_dir / name).shape[:2]
    assert (w, h) == FIXED_SIZES[name]


@slow
def test_training_mosaics_tile_the_batch(callback_run):
    # batch of 2 images of 64x64 -> a 2x2 grid of 64-px tiles (no shrinking below 1920 px)
    for i in range(3):
        assert _read(callback_run.run_dir / f"train_batch{i}.jpg").shape == (128, 128, 3)


@slow
def test_validation_mosaics_tile_the_rect_batches(callback_run):
    kept = callback_run.first.callbacks["plots"]._batches
    assert sorted(kept) == [0, 1, 2]  # 12 validation images in batches of 4
    for i, batch in kept.items():
        b, _, h, w = batch.images.shape
        grid = math.ceil(math.sqrt(b))
        for kind in ("labels", "pred"):
            assert _read(callback_run.run_dir / f"val_batch{i}_{kind}.jpg").shape == (grid * h, grid * w, 3)
        assert len(batch.predictions) > 0 and batch.predictions.shape[1] == 7  # drawn with confidences
    labels = _read(callback_run.run_dir / "val_batch0_labels.jpg").astype(int)
    preds = _read(callback_run.run_dir / "val_batch0_pred.jpg").astype(int)
    assert np.abs(labels - preds).mean() > 0.5  # label boxes and predicted boxes differ


@slow
def test_confusion_matrix_has_background_and_counts_every_label(callback_run):
    module = callback_run.resumed.module
    nc = module.model.model[-1].nc
    matrix = module.last_results["confusion_matrix"]
    assert matrix.shape == (nc + 1, nc + 1)
    # every label lands in exactly one row of its true class's column (a class or the background row)
    assert matrix[:, :nc].sum(0).tolist() == module.last_results["instances_per_class"].tolist()


@slow
def test_curves_have_their_required_monotonicity(callback_run):
    curves = callback_run.resumed.callbacks["plots"]._curves
    assert curves is not None and len(curves.unique_classes) > 0
    np.testing.assert_allclose(curves.px, np.linspace(0, 1, 1000))
    assert np.all(np.diff(curves.r_curve, axis=1) <= 1e-12)  # recall cannot grow with the confidence threshold
    assert np.all(np.diff(curves.pr_curve, axis=1) <= 1e-12)  # the PR envelope falls with recall
    for y in (curves.p_curve, curves.r_curve, curves.f1_curve, curves.pr_curve):
        assert y.min() >= 0 and y.max() <= 1


@slow
def test_results_picture_covers_every_epoch_including_the_resumed_one(callback_run):
    from lightning_yolo.plots.results import read_results_csv

    columns = read_results_csv(callback_run.run_dir / "results.csv")
    assert columns["epoch"].tolist() == [0, 1, 2]
    assert np.isfinite(columns["metrics/mAP_0.5"]).all()


@slow
def test_resumed_fit_redraws_the_final_pictures_but_not_the_first_batches(callback_run):
    first = {p.name for p in callback_run.first.callbacks["plots"].written}
    resumed = {p.name for p in callback_run.resumed.callbacks["plots"].written}
    assert {"train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg"} <= first
    assert not any(name.startswith("train_batch") for name in resumed)
    assert {"labels.jpg", "confusion_matrix.png", "PR_curve.png", "results.png"} <= resumed


@slow
def test_validate_run_draws_the_evaluation_pictures_at_its_end(callback_run):
    written = {p.name for p in callback_run.val_plots.written}
    expected = {f"val_batch{i}_{kind}.jpg" for i in range(3) for kind in ("labels", "pred")}
    expected |= {"PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png"}
    assert written == expected  # no labels, training batches or results.png outside a fit
    for name in expected:
        assert _read(callback_run.val_dir / name).std() > 1


def test_pictures_reach_tensorboard(tmp_path):
    from types import SimpleNamespace

    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_yolo.callbacks.plots import RunPlots

    picture = tmp_path / "PR_curve.png"
    cv2.imwrite(str(picture), np.full((30, 40, 3), (255, 0, 0), np.uint8))  # BGR blue
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = SimpleNamespace(loggers=[logger], global_step=7, current_epoch=2)
    RunPlots()._log(trainer, "Results", [picture], tensorboard=True)
    RunPlots()._log(trainer, "Labels", [picture], tensorboard=False)  # only end-of-run pictures go to TensorBoard
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["PR_curve"]
    (image,) = events.Images("PR_curve")
    decoded = cv2.imdecode(np.frombuffer(image.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert image.step == 2 and decoded.shape == (30, 40, 3) and decoded[0, 0].tolist() == [255, 0, 0]
