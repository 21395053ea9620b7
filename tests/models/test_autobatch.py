"""AutoBatch: YOLOv5's straight-line fit of peak memory against batch size, and the CPU fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from fit_helpers import fit_args

from lightning_yolo.models.autobatch import autobatch, solve_batch_size
from lightning_yolo.models.yolo import DetectionModel

SIZES = (1, 2, 4, 8, 16)


def test_the_line_is_solved_for_the_budget() -> None:
    peaks = [0.5 + 0.25 * b for b in SIZES]  # GiB: 0.5 fixed + 0.25 per image
    assert solve_batch_size(SIZES, peaks, budget=6.01, default=16) == 22  # int((6.01 - 0.5) / 0.25), as YOLOv5


def test_a_size_that_ran_out_of_memory_caps_the_answer() -> None:
    peaks = [0.5 + 0.25 * b for b in SIZES[:4]] + [None]
    assert solve_batch_size(SIZES, peaks, budget=6.0, default=16) == 8  # 22 >= 16, which failed: the last that fit


def test_anomalies_fall_back_to_the_default() -> None:
    assert solve_batch_size(SIZES, [1.0] * 5, budget=6.0, default=16) == 16  # flat: no slope
    assert solve_batch_size(SIZES, [0.001 * b for b in SIZES], budget=60.0, default=16) == 16  # > 1024


def test_cpu_keeps_the_default_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lightning_yolo"):
        assert autobatch(DetectionModel("yolov5n.yaml"), 64, torch.device("cpu")) == 16
    assert "no CUDA device" in caplog.text and "keeping batch size 16" in caplog.text


@pytest.mark.slow
def test_fit_with_batch_size_minus_one_trains_with_16_on_cpu(
    tmp_path: Path, tiny_dataset: Path, label_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lightning_yolo.cli import main

    args = fit_args(tiny_dataset, tmp_path, 1, "--data.batch_size=-1", "--noplots=true")
    with caplog.at_level(logging.INFO, logger="lightning_yolo"):
        main(args)
    assert "keeping batch size 16" in caplog.text
    hparams = torch.load(tmp_path / "tiny" / "weights" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["batch_size"] == 16  # the accumulation and weight decay used the chosen size
