"""Lightning's CheckpointIO for lightning_yolo: crash-safe writes, loud failures, ``weights_only`` reads.

Lightning's own atomic save stages the bytes through fsspec, which is only atomic when the staging place and the
target share a filesystem, and it can swallow permission errors. Here the temporary file lives in the target's own
folder, so ``os.replace`` is one atomic rename: after a ``kill -9`` at any moment the target is either the previous
complete checkpoint or the new complete one, never a partial file. Failures (disk full, read-only folder) raise.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

from lightning_yolo.checkpoints.files import (
    atomic_write_bytes,
    nonfinite_tensors,
    read_checkpoint,
    remove_stale_temporaries,
    write_failure,
)
from lightning_yolo.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic same-folder saves, loud failures, no non-finite weights, safe loads.

    Args:
        preloaded: A checkpoint the command line already read and checked, and its path: the first load of that
            path returns it instead of reading the file again.
    """

    def __init__(self, preloaded: tuple[str | Path, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._preloaded = preloaded

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Serialise ``checkpoint`` and write it atomically to ``path``.

        Raises:
            CheckpointError: The model or EMA weights hold NaN/inf (the previous file is kept).
            CheckpointError: The folder is read-only, the disk is full, ... (never swallowed; one line naming the
                folder, the reason and the free space; the previous file is kept).
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise CheckpointError(f"{path}: not saved, non-finite values in {len(bad)} weight tensors ({shown})")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            atomic_write_bytes(buffer.getbuffer(), path)
        except OSError as err:
            raise CheckpointError(write_failure(Path(path), err, len(buffer.getbuffer()))) from None
        remove_stale_temporaries(Path(path).parent)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        """Load with ``weights_only=True`` whatever the caller asked for (checkpoints never need code to load)."""
        if self._preloaded is not None and Path(self._preloaded[0]) == Path(path) and map_location in (None, "cpu"):
            _, checkpoint = self._preloaded
            self._preloaded = None  # handed over once; the memory is the trainer's from here
            return checkpoint
        return read_checkpoint(path, map_location=map_location or "cpu")
