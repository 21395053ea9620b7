"""Run folders: where each fit / validate / test writes its files, and how ``--ckpt_path last`` finds a run."""

from __future__ import annotations

import re
from pathlib import Path


class RunError(Exception):
    """A run folder or checkpoint to resume cannot be found."""


def _numbered(project: Path, name: str) -> list[Path]:
    """Existing folders ``name``, ``name2``, ``name3`` ... under ``project``, oldest number first."""
    pattern = re.compile(rf"^{re.escape(name)}(\d*)$")
    found = []
    for path in project.glob(f"{name}*"):
        match = pattern.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1) or 1), path))
    return [path for _, path in sorted(found)]


def new_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """The next free run folder ``project/name``, ``project/name2``, ... as YOLOv5 numbers them (not created)."""
    project = Path(project)
    existing = _numbered(project, name)
    if exist_ok or not existing:
        return project / name
    last = existing[-1].name[len(name) :]
    return project / f"{name}{int(last or 1) + 1}"


def last_checkpoint(project: str | Path, name: str) -> Path:
    """The ``weights/last.ckpt`` of the most recent run called ``name``; an error when there is none."""
    runs = _numbered(Path(project), name)
    candidates = [run / "weights" / "last.ckpt" for run in runs if (run / "weights" / "last.ckpt").is_file()]
    if not candidates:
        raise RunError(
            f"ckpt_path=last: no checkpoint to resume, no {Path(project) / name}*/weights/last.ckpt exists. "
            "Start a new run without --ckpt_path, or pass the checkpoint's path."
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)


def run_dir_of_checkpoint(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to when it sits in ``<run>/weights/``, else None."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "weights" else None
