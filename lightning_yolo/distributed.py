"""Pieces that keep a fit correct when it runs as several processes (DDP on GPUs, nodes, SLURM, torchrun).

- :func:`launch_rank` / :func:`rank_label`: which process this is, from the launcher's environment, usable before
  any process group exists (in the command line, in error messages).
- :func:`shared_run_dir`: the run folder picked once by rank 0 and reused by the processes it launches.
- :func:`resume_checkpoint`: what ``--ckpt_path last`` resumes from: the newest of ``weights/last.ckpt`` and the
  ``hpc_ckpt_N.ckpt`` a SLURM pre-emption signal saves into the run folder.
- :func:`wait_for_label_cache`: processes other than a node's first wait for its label scan by polling the cache
  file, so a scan longer than the collective timeout cannot make a barrier fail.
- :class:`BatchMean`: validation losses as YOLOv5 reports them (mean over batches), reduced over all ranks once at
  the epoch end (ranks run different numbers of validation batches, so nothing may sync per step).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchmetrics import Metric

from lightning_yolo.runs import RunError, last_checkpoint

log = logging.getLogger("lightning_yolo")

RUN_DIR_ENV = "LIGHTNING_YOLO_RUN_DIR"
"""Set by rank 0 to the run folder it picked; processes it launches (Lightning's ``ddp``) inherit and reuse it."""

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
"""Launcher variables that say a process is not the first: torchrun / Lightning (``RANK``, ``LOCAL_RANK``,
``NODE_RANK``, ``GROUP_RANK``) and srun (``SLURM_PROCID``)."""


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
    choice is logged. Raises :class:`~lightning_yolo.runs.RunError` when there is neither.
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


def wait_for_label_cache(ready: Callable[[], bool], cache_file: Path, poll_s: float = 2.0) -> bool:
    """Poll until ``ready()`` says the node's first process wrote a valid label cache; False when it never can.

    Waiting on a file instead of a barrier means no collective is pending while a large dataset is scanned, so
    the process group's timeout (30 minutes by default) cannot expire. When the cache folder is not writable the
    first process cannot write the cache either, and the caller scans for itself.
    """
    folder = cache_file.parent
    while not ready():
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return False
        time.sleep(poll_s)
    return True


class BatchMean(Metric):
    """Mean over batches of a per-batch vector (YOLOv5's validation losses: sum of batch losses / batches).

    The sums are reduced over ranks when computed, so a rank that ran more batches weighs in correctly and the
    result equals the single-process value (up to floating-point summation order).
    """

    full_state_update = False

    def __init__(self, size: int) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor) -> None:
        """Add one batch's vector ``(size,)``."""
        self.total += value.detach().to(self.total)
        self.batches += 1

    def compute(self) -> torch.Tensor:
        """``(size,)`` float32 mean; zeros when no batch was added anywhere."""
        return (self.total / self.batches.clamp(min=1)).float()
