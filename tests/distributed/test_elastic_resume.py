"""Elastic resume: a checkpoint resumed with another batch size rebuilds the accumulation and the weight decay for
the new global batch, and the LR scheduler continues from the checkpoint's epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
from ddp_helpers import common_args, read_events

from lightning_yolo.cli import main

pytestmark = pytest.mark.slow


def test_resume_with_another_batch_size(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIGHTNING_YOLO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    base = ["fit", *common_args(tiny_dataset, tmp_path / "runs", batch=4), "--name=e", "--trainer.devices=1"]
    main([*base, "--trainer.max_epochs=1"])
    first = read_events(tmp_path, "train_start")[0]
    main([*base, "--data.batch_size=3", "--trainer.max_epochs=2", "--ckpt_path=last"])
    resumed = read_events(tmp_path, "train_start")[0]
    # YOLOv5's rules, derived by hand: accumulate = round(64 / batch); decay = 5e-4 * batch * accumulate / 64
    assert (first["accumulate_batch"], first["accumulate"]) == (4, 16)
    assert (resumed["accumulate_batch"], resumed["accumulate"]) == (3, 21)
    assert first["weight_decay"][1] == pytest.approx(5e-4 * 4 * 16 / 64)
    assert resumed["weight_decay"][1] == pytest.approx(5e-4 * 3 * 21 / 64)
    assert resumed["weight_decay"][0] == resumed["weight_decay"][2] == 0.0
    # the scheduler continues (one epoch done), with the same initial learning rates
    assert first["scheduler_last_epoch"] == 0 and resumed["scheduler_last_epoch"] == 1
    assert resumed["initial_lr"] == first["initial_lr"]
    assert resumed["epoch"] == 1 and resumed["run_dir"] == first["run_dir"]
