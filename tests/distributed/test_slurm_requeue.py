"""SLURM pre-emption with faked SLURM variables and a stand-in ``scontrol``: SIGUSR1 saves ``hpc_ckpt_1.ckpt``,
requeues the job once, and the relaunched job (given ``--ckpt_path last``) resumes at the saved step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ddp_helpers import cli_env, common_args, read_events, run_cli

pytestmark = pytest.mark.slow

JOB_ID = "4242"

SCONTROL = """#!/bin/sh
# stand-in for SLURM's scontrol: record the call, then end the job as a real requeue does
echo "$@" >> "{log}"
kill -9 $PPID
"""


def _slurm_env(tmp: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(SCONTROL.format(log=tmp / "scontrol.log"))
    scontrol.chmod(0o755)
    env = cli_env(tmp, **extra)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        SLURM_JOB_ID=JOB_ID,
        SLURM_JOB_NAME="yolo",  # not "bash": Lightning then treats the job as SLURM-managed
        SLURM_NTASKS="1",
        SLURM_PROCID="0",
        SLURM_LOCALID="0",
        SLURM_NODEID="0",
        SLURM_NODELIST="localhost",
    )
    return env


def test_sigusr1_saves_requeues_once_and_the_requeued_job_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    args = ["fit", *common_args(tiny_dataset, project, batch=2), "--name=job", "--trainer.max_epochs=3"]
    # epoch 0 (iterations 0-3) ends with last.ckpt; the signal comes at iteration 5, mid-epoch 1
    first = run_cli(args, _slurm_env(tmp_path, PROBE_SIGNAL_AT_STEP="5"))
    assert first.returncode != 0  # ended by the (stand-in) requeue
    run = project / "job"
    hpc = run / "hpc_ckpt_1.ckpt"
    assert hpc.is_file() and (run / "weights" / "last.ckpt").is_file()
    assert (tmp_path / "scontrol.log").read_text().splitlines() == [f"requeue {JOB_ID}"]
    saved = read_events(tmp_path, "signal")[0]
    for event in tmp_path.glob("*_rank0.json"):
        event.rename(event.with_suffix(".first"))

    second = run_cli([*args, "--ckpt_path=last"], _slurm_env(tmp_path))
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in project.iterdir()) == ["job"]
    resumed = read_events(tmp_path, "train_start")[0]
    assert resumed["global_step"] == saved["global_step"] > 0  # from hpc_ckpt_1, not epoch 0's last.ckpt
    assert resumed["epoch"] == 1
    assert (tmp_path / "scontrol.log").read_text().count("requeue") == 1  # the resumed job did not requeue
