"""The checkpoint writer: atomic same-folder saves, loud failures, no non-finite weights."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from lightning_yolo.checkpoints import files as checkpoint_files
from lightning_yolo.checkpoints.io import AtomicCheckpointIO
from lightning_yolo.errors import CheckpointError


def _checkpoint(value: float) -> dict:
    return {"epoch": 1, "state_dict": {"model.w": torch.full((4,), value), "model.n": torch.tensor(3)}}


def _saved_value(path: Path) -> float:
    return float(torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["model.w"][0])


def test_save_round_trips_weights_only_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), path)
    AtomicCheckpointIO().save_checkpoint(_checkpoint(2.0), path)
    assert _saved_value(path) == 2.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_disk_full_fails_loudly_and_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_files.os, "fsync", full)
    with pytest.raises(CheckpointError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint(_checkpoint(2.0), path)
    monkeypatch.undo()
    assert _saved_value(path) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_fails_loudly(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match="Permission denied"):
            AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), folder / "last.ckpt")
    finally:
        folder.chmod(0o755)


def test_read_only_file_system_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only mount does to the temporary file (simulated, so the test also runs as root)."""

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(checkpoint_files.tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match="Read-only"):
        AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_never_written(bad: float, tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), path)
    checkpoint = _checkpoint(1.0)
    checkpoint["state_dict"]["ema.module.w"] = torch.tensor([0.0, bad])
    with pytest.raises(CheckpointError, match=r"non-finite values in 1 weight tensors \(ema.module.w\)"):
        AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    assert _saved_value(path) == 1.0


def test_temporaries_of_a_killed_save_are_cleaned_by_the_next_save(tmp_path: Path) -> None:
    stale = tmp_path / f"{checkpoint_files.TMP_PREFIX}last.ckpt.abc"
    stale.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), tmp_path / "last.ckpt")
    assert not stale.exists()
