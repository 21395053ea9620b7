"""Single-process pieces of the DDP support: rank detection, the shared run folder, the resume choice between
last.ckpt and SLURM hpc checkpoints, placeholder evaluation batches and the over-batches loss mean."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from lightning_yolo.checkpoints.runs import (
    RUN_DIR_ENV,
    RunError,
    launch_rank,
    rank_label,
    resume_checkpoint,
    run_dir_of_hpc_checkpoint,
    shared_run_dir,
)
from lightning_yolo.data.datamodule import collate_or_empty
from lightning_yolo.data.samplers import RectBatchSampler
from lightning_yolo.evaluation.metric import BatchMean


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS", RUN_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_rank_from_launcher_variables(clean_env) -> None:
    assert launch_rank() == 0 and rank_label() == "rank 0"
    clean_env.setenv("LOCAL_RANK", "1")
    assert launch_rank() == 1 and rank_label() == "rank 1"
    clean_env.setenv("RANK", "5")
    assert launch_rank() == 5 and rank_label() == "rank 5"
    clean_env.delenv("RANK")
    clean_env.delenv("LOCAL_RANK")
    clean_env.setenv("SLURM_NTASKS", "8")
    clean_env.setenv("SLURM_PROCID", "3")
    assert launch_rank() == 3 and rank_label() == "rank 3"


def test_launched_ranks_reuse_rank_zero_run_folder(clean_env, tmp_path: Path) -> None:
    picked = shared_run_dir(lambda: tmp_path / "exp")
    assert picked == tmp_path / "exp" and os.environ[RUN_DIR_ENV] == str(picked)
    clean_env.setenv("LOCAL_RANK", "1")  # a process rank 0 launched: it would otherwise number exp2
    assert shared_run_dir(lambda: tmp_path / "exp2") == picked


def _touch(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_resume_prefers_the_newer_hpc_checkpoint(tmp_path: Path) -> None:
    last = _touch(tmp_path / "exp" / "weights" / "last.ckpt", age_s=100)
    assert resume_checkpoint(tmp_path, "exp") == last
    _touch(tmp_path / "exp" / "hpc_ckpt_1.ckpt", age_s=200)  # older than last.ckpt: ignored
    assert resume_checkpoint(tmp_path, "exp") == last
    newer = _touch(tmp_path / "exp" / "hpc_ckpt_2.ckpt", age_s=10)
    assert resume_checkpoint(tmp_path, "exp") == newer
    assert run_dir_of_hpc_checkpoint(newer) == tmp_path / "exp" and run_dir_of_hpc_checkpoint(last) is None


def test_resume_from_hpc_checkpoint_alone_and_error_without_any(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no checkpoint to resume"):
        resume_checkpoint(tmp_path, "exp")
    hpc = _touch(tmp_path / "exp3" / "hpc_ckpt_1.ckpt", age_s=0)
    assert resume_checkpoint(tmp_path, "exp") == hpc


def test_rank_without_batches_gets_one_empty_batch() -> None:
    batches = [[0, 1], [2]]
    shards = [list(RectBatchSampler(batches, 3, r, placeholder=True)) for r in range(3)]
    assert shards == [[[0, 1]], [[2]], [[]]]
    assert [len(RectBatchSampler(batches, 3, r, placeholder=True)) for r in range(3)] == [1, 1, 1]
    assert list(RectBatchSampler([], 2, 1, placeholder=True)) == []  # nothing anywhere: nothing to hold a rank up
    empty = collate_or_empty([])
    assert empty["img"].shape == (0, 3, 0, 0) and empty["targets"].shape == (0, 6) and empty["paths"] == []


def test_batch_mean_is_the_mean_over_batches() -> None:
    mean = BatchMean(3)
    mean.update(torch.tensor([1.0, 2.0, 3.0]))
    mean.update(torch.tensor([3.0, 4.0, 5.0]))
    torch.testing.assert_close(mean.compute(), torch.tensor([2.0, 3.0, 4.0]))
    mean.reset()
    torch.testing.assert_close(mean.compute(), torch.zeros(3))
