"""Crash-safe checkpoint files: write beside the target, fsync, then rename over it; read with ``weights_only``.

Lightning's own atomic save stages the bytes through fsspec, which is only atomic when the staging place and the
target share a filesystem, and it can swallow permission errors. Here the temporary file lives in the target's own
folder, so ``os.replace`` is one atomic rename: after a ``kill -9`` at any moment the target is either the previous
complete checkpoint or the new complete one, never a partial file. Failures (disk full, read-only folder) raise.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_yolo.checkpoint_files import read_checkpoint
from lightning_yolo.errors import CheckpointError

TMP_PREFIX = ".tmp-"
"""Temporary files start with this (a dot, so no glob for ``*.ckpt`` and no ``last`` lookup ever picks them up)."""


def nonfinite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` holding NaN or inf values."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
    ]


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over ``path``;
    the folder is fsynced too so the rename itself survives a power cut. Any OSError propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files left in ``folder`` by a save that was killed; returns what was removed."""
    stale = sorted(Path(folder).glob(TMP_PREFIX + "*")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic same-folder saves, loud failures, no non-finite weights, safe loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Serialise ``checkpoint`` and write it atomically to ``path``.

        Raises:
            CheckpointError: The model or EMA weights hold NaN/inf (the previous file is kept).
            OSError: The folder is read-only, the disk is full, ... (never swallowed).
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise CheckpointError(f"{path}: not saved, non-finite values in {len(bad)} weight tensors ({shown})")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(buffer.getbuffer(), path)
        remove_stale_temporaries(Path(path).parent)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        """Load with ``weights_only=True`` whatever the caller asked for (checkpoints never need code to load)."""
        return read_checkpoint(path, map_location=map_location or "cpu")
