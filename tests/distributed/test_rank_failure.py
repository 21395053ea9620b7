"""A failing rank ends the whole DDP job promptly: every process exits, non-zero, and the message names the rank."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ddp_helpers import PYTHON, ROOT, cli_env, common_args, ddp_args

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        found += [int(c) for c in children]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(tiny_dataset: Path, tmp: Path, **env: str) -> subprocess.Popen:
    args = ["fit", *common_args(tiny_dataset, tmp / "runs"), *ddp_args(2), "--trainer.max_epochs=50"]
    return subprocess.Popen(
        [PYTHON, "-m", "lightning_yolo", *args],
        env=cli_env(tmp, **env),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "stderr.txt", "w"),  # noqa: SIM115 - closed when the process ends
    )


def _wait_training(proc: subprocess.Popen, tmp: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not list(tmp.glob("train_start_rank*.json")) or len(list(tmp.glob("train_start_rank*.json"))) < 2:
        assert proc.poll() is None, (tmp / "stderr.txt").read_text()[-2000:]
        assert time.monotonic() < end, "training did not start"
        time.sleep(0.5)


def test_exception_in_one_rank_ends_every_rank_naming_it(tiny_dataset: Path, tmp_path: Path) -> None:
    proc = _start(tiny_dataset, tmp_path, PROBE_CRASH_RANK="1", PROBE_CRASH_AT_BATCH="1")
    children = []
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < 120:
        children = children or _children(proc.pid)
        time.sleep(0.2)
    crashed_at = time.monotonic()
    assert proc.wait(timeout=60) != 0
    assert crashed_at - start < 120
    assert children and not any(_alive(c) for c in children)
    assert "rank 1: error: RuntimeError: probe: injected failure" in (tmp_path / "stderr.txt").read_text()


def test_killed_rank_ends_every_rank_within_60_s(tiny_dataset: Path, tmp_path: Path) -> None:
    proc = _start(tiny_dataset, tmp_path)
    try:
        _wait_training(proc, tmp_path)
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)
        killed = time.monotonic()
        rc = proc.wait(timeout=60)
        assert time.monotonic() - killed < 60
        assert rc != 0
    finally:
        if proc.poll() is None:
            proc.kill()
