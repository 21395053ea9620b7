"""AutoAnchor callback: evolves bad anchors into model, EMA and loss before training, keeps them on resume,
computes on rank 0 only and gives every rank the broadcast anchors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lightning_yolo.callbacks.autoanchor import AutoAnchor, training_labels
from lightning_yolo.models.anchors import anchor_fitness, label_wh

STRIDES = torch.tensor([8.0, 16.0, 32.0])
YOLOV5N_ANCHORS_PX = torch.tensor(
    [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]
).float()


# ------------------------------------------------------------------------------------------------ stubs
class _Strategy:
    """Records what was broadcast; a non-zero rank receives `incoming` instead of its own object."""

    def __init__(self, incoming: object = "own") -> None:
        self.incoming, self.sent = incoming, []

    def broadcast(self, obj: object, src: int = 0) -> object:
        self.sent.append(obj)
        return obj if self.incoming == "own" else self.incoming


class _Module:
    """The parts of YOLOModule the callback uses (``DetectorModule``): anchor_grid, hparams, set_anchors."""

    def __init__(self, anchors_px: torch.Tensor, imgsz: int = 640) -> None:
        self.anchor_grid = (anchors_px / STRIDES.view(-1, 1, 1), STRIDES.clone())
        self.hparams = {"imgsz": imgsz, "anchor_t": 4.0}
        self.device = torch.device("cpu")
        self.adopted: list[torch.Tensor] = []

    def set_anchors(self, anchors: torch.Tensor) -> None:
        self.adopted.append(anchors.clone())


def _labels(n_images: int = 20, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random images (w, h) and 1-4 labels each with boxes 5-40 % of the image."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(200, 640, size=(n_images, 2))
    labels = []
    for _ in range(n_images):
        n = int(rng.integers(1, 5))
        labels.append(np.c_[rng.integers(0, 3, n), rng.uniform(0.3, 0.7, (n, 2)), rng.uniform(0.05, 0.4, (n, 2))])
    return shapes, labels


def _trainer(shapes, labels, rank_zero: bool = True, ckpt_path: str | None = None, incoming: object = "own"):
    dataset = SimpleNamespace(shapes_wh=shapes, labels=labels)
    return SimpleNamespace(
        datamodule=SimpleNamespace(datasets={"train": dataset}),
        is_global_zero=rank_zero,
        ckpt_path=ckpt_path,
        strategy=_Strategy(incoming),
    )


# ------------------------------------------------------------------------------------------------ fast tests
def test_training_labels_come_from_the_datamodules_train_dataset():
    shapes, labels = _labels(3)
    found = training_labels(_trainer(shapes, labels))
    np.testing.assert_array_equal(found[0], shapes)
    assert [lb.shape for lb in found[1]] == [lb.shape for lb in labels]


def test_training_labels_come_from_the_train_split_and_are_none_without_one():
    shapes, labels = _labels(2)
    dataset = SimpleNamespace(shapes_wh=shapes, labels=labels)
    found = training_labels(SimpleNamespace(datamodule=SimpleNamespace(datasets={"train": dataset})))
    np.testing.assert_array_equal(found[0], shapes)
    assert [lb.shape for lb in found[1]] == [lb.shape for lb in labels]
    assert training_labels(SimpleNamespace(datamodule=None)) is None
    assert training_labels(SimpleNamespace(datamodule=SimpleNamespace(datasets={"val": dataset}))) is None


def test_rank_zero_evolves_bad_anchors_and_broadcasts_what_it_adopts():
    shapes, labels = _labels()
    module, trainer = _Module(torch.full((3, 3, 2), 2.0)), _trainer(shapes, labels)
    callback = AutoAnchor(gen=300)
    callback.on_fit_start(trainer, module)
    report = callback.report
    assert report.bpr < 0.1 and report.new_bpr > 0.98
    (sent,) = trainer.strategy.sent
    torch.testing.assert_close(sent, report.new_anchors.half().float(), rtol=0, atol=0)  # fp16-rounded, as YOLOv5
    (adopted,) = module.adopted
    torch.testing.assert_close(adopted, sent, rtol=0, atol=0)
    wh = label_wh(shapes, labels, 640, jitter=None)
    assert anchor_fitness(adopted * STRIDES.view(-1, 1, 1), wh)[0] > 0.98


def test_good_anchors_are_kept_and_nothing_is_adopted():
    shapes, labels = _labels()
    module, trainer = _Module(YOLOV5N_ANCHORS_PX), _trainer(shapes, labels)
    callback = AutoAnchor()
    callback.on_fit_start(trainer, module)
    assert callback.report.bpr > 0.98 and callback.report.new_bpr is None
    assert trainer.strategy.sent == [None] and module.adopted == []


def test_other_ranks_do_not_compute_and_adopt_the_broadcast_anchors():
    shapes, labels = _labels()
    from_rank_zero = torch.rand(3, 3, 2)
    module = _Module(torch.full((3, 3, 2), 2.0))
    trainer = _trainer(shapes, labels, rank_zero=False, incoming=from_rank_zero)
    callback = AutoAnchor()
    callback.on_fit_start(trainer, module)
    assert callback.report is None and trainer.strategy.sent == [None]  # joined the broadcast with nothing
    torch.testing.assert_close(module.adopted[0], from_rank_zero)


@pytest.mark.parametrize("setting", ["disabled", "resumed"])
def test_disabled_or_resumed_fit_leaves_anchors_alone(setting):
    shapes, labels = _labels()
    module = _Module(torch.full((3, 3, 2), 2.0))
    trainer = _trainer(shapes, labels, ckpt_path="last.ckpt" if setting == "resumed" else None)
    callback = AutoAnchor(enabled=setting != "disabled")
    callback.on_fit_start(trainer, module)
    assert callback.report is None and trainer.strategy.sent == [] and module.adopted == []


def test_missing_training_labels_skip_the_check_on_every_rank():
    module = _Module(torch.full((3, 3, 2), 2.0))
    trainer = SimpleNamespace(datamodule=None, is_global_zero=True, ckpt_path=None, strategy=_Strategy())
    AutoAnchor().on_fit_start(trainer, module)
    assert trainer.strategy.sent == [None] and module.adopted == []


# ------------------------------------------------------------------------------------------------ parity
@pytest.fixture(scope="module")
def coco128_train(shared: Path, tmp_path_factory: pytest.TempPathFactory):
    """coco128's training split as the data module reads it (label cache kept in a temporary folder)."""
    from lightning_yolo.data.datamodule import YOLODataModule

    data = YOLODataModule(
        str(shared / "data" / "coco128" / "coco128.yaml"), workers=0, cache_dir=str(tmp_path_factory.mktemp("c"))
    )
    return data.build_dataset("train")


# Upstream YOLOv5's check_anchors, run side by side on the same 929 labels with its `np.random.uniform` scale
# jitter replaced by `np.random.default_rng(0).uniform`, printed these (anchors/target, BPR) for yolov5n's anchors.
UPSTREAM = {640: (4.288482, 0.994618), 320: (4.006459, 0.963401)}


@pytest.mark.parametrize("imgsz", [640, 320])
def test_against_yolov5_check_anchors_on_coco128(coco128_train, imgsz):
    dataset = coco128_train
    assert sum(len(lb) for lb in dataset.labels) == 929
    report = AutoAnchor(seed=0, gen=200).check(
        YOLOV5N_ANCHORS_PX / STRIDES.view(-1, 1, 1), STRIDES, dataset.shapes_wh, dataset.labels, imgsz, 4.0
    )
    aat, bpr = UPSTREAM[imgsz]
    # upstream prints 6 decimals of float32 values: equal within that
    assert report.aat == pytest.approx(aat, abs=1e-6) and report.bpr == pytest.approx(bpr, abs=1e-6)
    if imgsz == 640:
        assert report.new_anchors is None and "good fit" in report.summary()
    else:  # below 0.98: evolved, and adopted only because the BPR improved
        assert report.new_bpr > report.bpr and report.new_anchors is not None


# ------------------------------------------------------------------------------------------------ real fit
@pytest.mark.slow
def test_bad_anchors_are_evolved_and_trained_with(callback_run):
    from lightning_yolo.callbacks.autoanchor import training_labels as read_labels

    first = callback_run.first
    report = first.callbacks["autoanchor"].report
    assert report is not None and report.bpr < 0.1 and report.new_bpr > 0.98
    expected = report.new_anchors.half().float()
    for holder in ("model", "loss"):  # after two epochs the loss still uses exactly what the model holds
        torch.testing.assert_close(first.anchors[holder], expected, rtol=0, atol=0)
    # the EMA averages buffers too: averaging equal values moves them by a rounding error at most
    torch.testing.assert_close(first.anchors["ema"], expected, rtol=1e-6, atol=0)
    shapes, labels = read_labels(first.trainer)
    stride = first.module.model.model[-1].stride.cpu()
    bpr, _ = anchor_fitness(expected * stride.view(-1, 1, 1), label_wh(shapes, labels, 64, jitter=None))
    assert bpr > 0.98


@pytest.mark.slow
def test_resumed_fit_keeps_the_checkpoints_anchors(callback_run):
    first, resumed = callback_run.first, callback_run.resumed
    assert resumed.callbacks["autoanchor"].report is None  # did not run again
    # the resumed module was built with the bad anchors again: equal anchors can only come from the checkpoint
    for holder in ("model", "loss"):
        torch.testing.assert_close(resumed.anchors[holder], first.anchors[holder], rtol=0, atol=0)
    torch.testing.assert_close(resumed.anchors["ema"], first.anchors["ema"], rtol=1e-6, atol=0)
