"""Throughput: images per second over an epoch's batches, summed over processes, running rate in the bar."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lightning_yolo.callbacks import throughput
from lightning_yolo.callbacks.throughput import Throughput, batch_images


class _Module:
    def __init__(self) -> None:
        self.logged: list[tuple[str, float, dict]] = []

    def log(self, name: str, value: float, **kwargs) -> None:
        self.logged.append((name, value, kwargs))


def test_batch_images_counts_the_image_tensor():
    assert batch_images({"img": torch.zeros(5, 3, 8, 8), "targets": torch.zeros(9, 6)}) == 5
    assert batch_images({"targets": torch.zeros(9, 6)}) == 9  # first tensor when there is no "img"
    assert batch_images((torch.zeros(4, 2), torch.zeros(4))) == 4
    assert batch_images({"paths": ["a"]}) == 0


def test_epoch_rate_is_images_over_the_time_to_the_last_batch(monkeypatch):
    clock = iter([100.0, 101.0, 102.0, 104.0])  # epoch start, then three batch ends
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    callback, module, trainer = Throughput(), _Module(), SimpleNamespace()
    callback.on_train_epoch_start(trainer, module)
    for i in range(3):
        callback.on_train_batch_end(trainer, module, None, {"img": torch.zeros(8, 3, 4, 4)}, i)
    callback.on_train_epoch_end(trainer, module)
    bar = [value for name, value, _ in module.logged if name == "img/s"]
    assert bar == pytest.approx([8.0, 8.0, 6.0])  # running rate: 8/1, 16/2, 24/4
    name, value, kwargs = module.logged[-1]
    assert (name, value) == ("x/images_per_s", pytest.approx(6.0))
    assert kwargs["sync_dist"] and kwargs["reduce_fx"] == "sum" and not kwargs.get("prog_bar", False)


def test_an_epoch_without_batches_logs_nothing():
    callback, module = Throughput(prog_bar=False), _Module()
    callback.on_train_epoch_start(None, module)
    callback.on_train_epoch_end(None, module)
    assert module.logged == []
