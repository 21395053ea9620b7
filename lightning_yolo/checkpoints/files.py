"""Checkpoint files on disk: read safely (``weights_only=True`` always, every failure naming the file and the reason)
and written crash-safely (a temporary file in the target's folder, fsynced, then renamed over the target).

Torch only: no Lightning, so weights loading in ``models/`` and inference can use it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch

from lightning_yolo.errors import CheckpointError

MAX_LISTED = 8
"""Mismatched keys named in a message before the rest are only counted."""


def read_checkpoint(path: str | Path, map_location: Any = "cpu", hint: str = "") -> dict[str, Any]:
    """Load a Lightning checkpoint with ``torch.load(weights_only=True)``; ``hint`` ends the no-state_dict message.

    Raises:
        CheckpointError: ``path`` is missing, empty, truncated, not a torch file, holds a pickle that would run code
            (refused by the weights-only unpickler, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says), or is not
            a Lightning checkpoint (no ``state_dict``). The message starts with the path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {not_a_file(path)}, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (0 bytes)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure becomes one message naming the file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a loadable lightning_yolo checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict){hint}")
    return checkpoint


def mismatched_keys(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> list[str]:
    """Human-readable differences between a model's ``state_dict`` and a checkpoint's: missing, extra, shape."""
    problems = [f"missing {k}" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    for key, tensor in expected.items():
        other = found.get(key)
        if isinstance(other, torch.Tensor) and other.shape != tensor.shape:
            problems.append(f"{key} {tuple(other.shape)} in the file, {tuple(tensor.shape)} in the model")
    return problems


def check_state_dict_matches(expected: dict[str, torch.Tensor], checkpoint: dict[str, Any], source: Any) -> None:
    """Raise CheckpointError naming ``source`` and the mismatched keys when the checkpoint is for another model.

    Lightning would raise a bare ``RuntimeError`` from ``load_state_dict`` deep in a traceback instead.
    """
    problems = mismatched_keys(expected, checkpoint.get("state_dict", {}))
    if not problems:
        return
    hparams = checkpoint.get("hyper_parameters", {})
    what = f" (the file is for nc={hparams['nc']})" if "nc" in hparams else ""
    listed = "; ".join(problems[:MAX_LISTED]) + (
        f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    )
    raise CheckpointError(
        f"{source or 'checkpoint'}: does not fit this model{what}, {len(problems)} mismatched keys: {listed}"
    )


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


def not_a_file(path: Path) -> str:
    """What ``path`` is when it is not a regular file: ``"no such file"``, ``"a folder"``, ``"a FIFO"``, ..."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"))
    kinds += ((stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def write_failure(path: Path, err: OSError, size: int) -> str:
    """One line for a checkpoint that could not be written: the folder, the reason, the space it needed and had."""
    folder = path.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:,.0f} MB free"
    except OSError:
        free = "free space unknown"
    return f"{folder}: cannot write {path.name} ({err.strerror or err}; it needs {size / 1e6:,.0f} MB, {free})"
