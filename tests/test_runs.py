"""Run folders are numbered like YOLOv5's and `ckpt_path=last` never silently starts fresh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightning_yolo.checkpoints.runs import RunError, last_checkpoint, new_run_dir, run_dir_of_checkpoint


def test_new_run_dir_numbers_existing_folders(tmp_path: Path) -> None:
    assert new_run_dir(tmp_path, "exp") == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    assert new_run_dir(tmp_path, "exp") == tmp_path / "exp2"
    (tmp_path / "exp2").mkdir()
    (tmp_path / "experiment").mkdir()  # another name sharing the prefix is not a numbered run
    assert new_run_dir(tmp_path, "exp") == tmp_path / "exp3"
    assert new_run_dir(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"


def test_last_checkpoint_without_any_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no checkpoint to resume"):
        last_checkpoint(tmp_path, "exp")
    (tmp_path / "exp" / "weights").mkdir(parents=True)
    with pytest.raises(RunError):
        last_checkpoint(tmp_path, "exp")


def test_last_checkpoint_picks_the_newest_run(tmp_path: Path) -> None:
    for i, name in enumerate(("exp", "exp2")):
        ckpt = tmp_path / name / "weights" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"x")
        os.utime(ckpt, (1000 + i, 1000 + i))
    assert last_checkpoint(tmp_path, "exp") == tmp_path / "exp2" / "weights" / "last.ckpt"
    assert run_dir_of_checkpoint(tmp_path / "exp2" / "weights" / "last.ckpt") == tmp_path / "exp2"
    assert run_dir_of_checkpoint(tmp_path / "model.ckpt") is None
