"""YOLOv5's --image-weights (class-weighted sampling from the latest per-class mAP) and --quad (4 images in one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_yolo.data.datamodule import YOLODataModule
from lightning_yolo.data.dataset import collate_quad
from lightning_yolo.data.samplers import WeightedEpochSampler, class_weights, image_weights
from lightning_yolo.errors import ConfigError


def test_class_weights_are_inverse_frequencies_with_mean_one() -> None:
    labels = [np.array([[0, 0.5, 0.5, 0.1, 0.1]] * 3), np.array([[1, 0.5, 0.5, 0.1, 0.1]])]
    # counts [3, 1, 0 -> 1]; 1/counts = [1/3, 1, 1], sum 7/3; times nc = 3
    np.testing.assert_allclose(class_weights(labels, 3), [3 / 7, 9 / 7, 9 / 7])


def test_image_weights_follow_yolov5s_formula() -> None:
    labels = [np.array([[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]), np.array([[1, 0, 0, 1, 1]]), np.zeros((0, 5))]
    # class weights [2/3, 4/3]; times (1 - maps)^2 / nc with maps [0.5, 0]: [1/12, 2/3]; image sums: 2/12, 2/3, 0
    np.testing.assert_allclose(image_weights(labels, 2, np.array([0.5, 0.0])), [1 / 6, 2 / 3, 0])


def test_weighted_sampler_draws_by_weight_and_ranks_share_one_draw() -> None:
    weights = np.array([0.0, 0.0, 1.0, 0.0])
    only = WeightedEpochSampler(range(4), lambda: weights, seed=0, epoch_fn=lambda: 0)
    assert [i for i, _ in only] == [2, 2, 2, 2]
    skewed = np.array([1.0, 1.0, 1.0, 5.0, 0.0, 1.0, 1.0, 1.0])
    full = [i for i, _ in WeightedEpochSampler(range(8), lambda: skewed, seed=3, epoch_fn=lambda: 1)]
    ranks = [[i for i, _ in WeightedEpochSampler(range(8), lambda: skewed, 2, r, 3, lambda: 1)] for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(full) and 4 not in full
    again = [i for i, _ in WeightedEpochSampler(range(8), lambda: skewed, seed=3, epoch_fn=lambda: 2)]
    assert again != full  # a new draw each epoch


def test_datamodule_with_image_weights_never_draws_unlabelled_images(tiny_dataset: Path, label_cache: Path) -> None:
    data = YOLODataModule(str(tiny_dataset), imgsz=64, batch_size=4, workers=0, image_weights=True)
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    assert isinstance(sampler, WeightedEpochSampler)
    labelled = {i for i, lb in enumerate(data.datasets["train"].labels) if len(lb)}
    assert {i for i, _ in sampler} <= labelled


def _sample(value: int, label: list[float]) -> tuple:
    img = torch.full((3, 2, 2), value, dtype=torch.uint8)
    return img, torch.tensor([label]), f"{value}.jpg", ((2, 2), ((1.0, 1.0), (0.0, 0.0)))


def test_quad_tiles_four_images_and_their_labels() -> None:
    samples = [_sample(v, [0, v, 0.5, 0.5, 0.2, 0.2]) for v in (10, 20, 30, 40)]
    batch = collate_quad(samples, draw=lambda: 0.9)
    img = batch["img"][0, 0]
    assert batch["img"].shape == (1, 3, 4, 4)
    assert img[:2, :2].unique().item() == 10 and img[2:, :2].unique().item() == 20  # 1 below 0
    assert img[:2, 2:].unique().item() == 30 and img[2:, 2:].unique().item() == 40  # 2 and 3 on the right
    expected = [[0.25, 0.25, 0.1, 0.1], [0.25, 0.75, 0.1, 0.1], [0.75, 0.25, 0.1, 0.1], [0.75, 0.75, 0.1, 0.1]]
    torch.testing.assert_close(batch["targets"][:, 2:], torch.tensor(expected))


def test_quad_upscales_the_first_image_otherwise() -> None:
    samples = [_sample(v, [0, v, 0.5, 0.5, 0.2, 0.2]) for v in (10, 20, 30, 40, 50, 60, 70, 80)]
    batch = collate_quad(samples, draw=lambda: 0.1)
    assert batch["img"].shape == (2, 3, 4, 4) and batch["img"][1].unique().item() == 50
    assert batch["targets"][:, [0, 1]].tolist() == [[0, 10], [1, 50]]  # one label each, images renumbered


def test_quad_needs_a_multiple_of_four(tiny_dataset: Path, label_cache: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of 4"):
        YOLODataModule(str(tiny_dataset), batch_size=6, quad=True)


def test_quad_training_batches_have_twice_the_side(tiny_dataset: Path, label_cache: Path) -> None:
    data = YOLODataModule(str(tiny_dataset), imgsz=64, batch_size=4, workers=0, quad=True)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["img"].shape == (1, 3, 128, 128)


def test_quad_scales_the_loss_by_four() -> None:
    from lightning_yolo.module import YOLOModule

    batch = {"img": torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "targets": torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.3]])}
    plain = YOLOModule(cfg="yolov5n.yaml", nc=1, ema=False, imgsz=64)
    quad = YOLOModule(cfg="yolov5n.yaml", nc=1, ema=False, imgsz=64, quad=True)
    quad.model.load_state_dict(plain.model.state_dict())
    (loss, items), (quad_loss, quad_items) = plain.training_loss(batch), quad.training_loss(batch)
    assert float(quad_loss) == pytest.approx(4 * float(loss), rel=1e-5)
    torch.testing.assert_close(quad_items, items)  # the logged loss items are not scaled
