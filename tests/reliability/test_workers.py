"""A dataloader worker killed mid-run: a prompt error naming the worker, never a hang."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from fit_helpers import fit_args

from lightning_yolo.cli import main
from lightning_yolo.module import YOLOModule


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killed_loader_worker_stops_the_fit_with_an_error(
    tiny_dataset: Path, tmp_path: Path, label_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = YOLOModule.training_step
    earlier = set(_children(os.getpid()))  # e.g. persistent workers other tests left behind: not this fit's

    def step_then_kill_a_worker(self: YOLOModule, batch: dict, batch_idx: int):
        loss = real_step(self, batch, batch_idx)
        if self.current_epoch == 0 and batch_idx == 0:
            workers = [pid for pid in _children(os.getpid()) if pid not in earlier]
            assert workers, "no loader worker found"
            os.kill(workers[0], signal.SIGKILL)
        return loss

    monkeypatch.setattr(YOLOModule, "training_step", step_then_kill_a_worker)
    args = [a for a in fit_args(tiny_dataset, tmp_path, 3) if not a.startswith("--data.workers")]
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid.*\) (is killed by signal|exited unexpectedly)"):
        main([*args, "--data.workers=1"])
