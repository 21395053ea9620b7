"""Run folders: where each fit / validate / test writes its files, and what ``--ckpt_path last`` resumes from.

- :func:`claim_run_dir`: create the next free ``exp``, ``exp2``, ... folder (YOLOv5's numbering) atomically, so two
  runs started at the same moment never share one; :func:`new_run_dir` only names it.
- :func:`shared_run_dir`: the folder picked once by rank 0 and reused by the processes it launches;
  :func:`launch_rank` / :func:`rank_label` say which process this is before any process group exists.
- :func:`resume_checkpoint`: the newest of ``weights/last.ckpt`` and the ``hpc_ckpt_N.ckpt`` a SLURM pre-emption
  signal saves into the run folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("lightning_yolo")


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


def claim_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Create the next free run folder and return it; the creation is the claim (``mkdir`` fails if it exists).

    Two processes started together both compute ``exp5``; one creates it, the other's ``mkdir`` fails and it moves
    on to ``exp6``. With ``exist_ok`` the folder ``project/name`` itself is used, created when missing.

    Raises:
        RunError: the folder cannot be created (read-only project folder, a file in the way, ...).
    """
    project = Path(project)
    try:
        project.mkdir(parents=True, exist_ok=True)
        if exist_ok:
            (project / name).mkdir(exist_ok=True)
            return project / name
        candidate = new_run_dir(project, name)
        for _ in range(10_000):
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:  # taken a moment ago, or a file of that name: the next number
                number = candidate.name[len(name) :]
                candidate = project / f"{name}{int(number or 1) + 1}"
    except OSError as err:
        raise RunError(f"{project}: cannot create a run folder ({err.strerror or err})") from None
    raise RunError(f"{project}: no free run folder name {name}N")


def remove_if_unused(run_dir: Path) -> bool:
    """Delete a run folder that holds nothing but ``config.yaml`` and empty folders (a run that failed to start).

    Returns True when it was removed. Anything else in it (a checkpoint, results, pictures, logs) keeps it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    files = [p for p in run_dir.rglob("*") if not p.is_dir()]
    if any(p != run_dir / "config.yaml" for p in files):
        return False
    for path in files:
        path.unlink()
    for folder in sorted((p for p in run_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()
    run_dir.rmdir()
    return True


def keep_previous_config(run_dir: Path) -> Path | None:
    """Rename ``run_dir/config.yaml`` to the first free ``config.previous[N].yaml`` before a new one replaces it."""
    current = Path(run_dir) / "config.yaml"
    if not current.is_file():
        return None
    for n in range(1, 10_000):
        kept = current.with_name("config.previous.yaml" if n == 1 else f"config.previous{n}.yaml")
        if not kept.exists():
            current.rename(kept)
            return kept
    return None


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


RUN_DIR_ENV = "LIGHTNING_YOLO_RUN_DIR"
"""Set by rank 0 to the run folder it picked; processes it launches (Lightning's ``ddp``) inherit and reuse it."""


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0") or 0)
    except ValueError:
        return 0


def launch_rank() -> int:
    """0 for the first process of a (possibly distributed) launch, a positive number for every other one.

    Read from the environment, so it works before the process group exists: the global ``RANK`` when set, else
    ``SLURM_PROCID`` (srun), else ``NODE_RANK`` / ``LOCAL_RANK`` (Lightning's own launcher) folded into one number.
    """
    if "RANK" in os.environ:
        return _env_int("RANK")
    if "SLURM_PROCID" in os.environ and _env_int("SLURM_NTASKS") > 1:
        return _env_int("SLURM_PROCID")
    return max(_env_int("NODE_RANK"), _env_int("GROUP_RANK")) * 1000 + _env_int("LOCAL_RANK")


def rank_label() -> str:
    """``"rank N"`` for messages (N is the global rank where the launcher says it, else node/local ranks)."""
    if "RANK" in os.environ or ("SLURM_PROCID" in os.environ and _env_int("SLURM_NTASKS") > 1):
        return f"rank {launch_rank()}"
    node, local = max(_env_int("NODE_RANK"), _env_int("GROUP_RANK")), _env_int("LOCAL_RANK")
    return f"rank {local}" if node == 0 else f"node {node} local rank {local}"


def shared_run_dir(resolve: Callable[[], Path]) -> Path:
    """The run folder of this launch: rank 0 calls ``resolve`` and exports the result in :data:`RUN_DIR_ENV`.

    Lightning's ``ddp`` strategy starts ranks > 0 as new processes running the same command line after rank 0 has
    parsed it; without this they would number their own folder (``exp2`` beside rank 0's ``exp``) and look for
    resume checkpoints elsewhere. Ranks started by torchrun or srun have no such parent: they resolve the folder
    themselves, which agrees with rank 0 because nothing is written into a run folder before every rank has
    joined the process group (and a SLURM requeue reuses its ``--name`` with ``--exist_ok``; see
    ``docs/distributed.md``).
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if launch_rank() != 0 and inherited:
        return Path(inherited)
    run_dir = resolve()
    if launch_rank() == 0:
        os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


HPC_PATTERN = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")


def hpc_checkpoints(run_dir: Path) -> list[Path]:
    """The ``hpc_ckpt_N.ckpt`` files Lightning's SLURM signal handler wrote into ``run_dir``, oldest N first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("hpc_ckpt_*.ckpt") if (m := HPC_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def run_dir_of_hpc_checkpoint(ckpt: Path) -> Path | None:
    """The run folder of an ``hpc_ckpt_N.ckpt`` (it sits in the run folder itself), else None."""
    return Path(ckpt).parent if HPC_PATTERN.match(Path(ckpt).name) else None


def resume_checkpoint(project: Path, name: str) -> Path:
    """What ``--ckpt_path last`` resumes: the newest ``weights/last.ckpt`` or ``hpc_ckpt_N.ckpt`` of runs ``name*``.

    A SLURM pre-emption signal saves ``hpc_ckpt_N.ckpt`` into the run folder mid-epoch, after the epoch-end
    ``last.ckpt``; the requeued job must continue from it, so the newer file (by modification time) wins, and the
    choice is logged. Raises :class:`RunError` when there is neither.
    """
    try:
        last: Path | None = last_checkpoint(project, name)
    except RunError:
        last = None
    pattern = re.compile(rf"^{re.escape(name)}\d*$")
    runs = [run for run in Path(project).glob(f"{name}*") if pattern.match(run.name) and run.is_dir()]
    candidates = [last] if last is not None else []
    candidates += [found[-1] for run in runs if (found := hpc_checkpoints(run))]
    if not candidates:
        return last_checkpoint(project, name)  # raises the usual "no checkpoint to resume" error
    newest = max(candidates, key=lambda p: p.stat().st_mtime_ns)
    if newest != last:
        log.info("ckpt_path=last: resuming from %s (saved after %s)", newest, last or "any last.ckpt")
    return newest
