"""Helpers of the multi-process tests: a probe callback that the command line loads by class path, and launchers.

The probe is configured by environment variables (inherited by every DDP rank):
``PROBE_DIR`` (where each rank writes ``<event>_rank<N>.json``), ``PROBE_SIGNAL_AT_STEP`` (send this process
SIGUSR1 after that optimiser-independent global step), ``PROBE_CRASH_RANK`` / ``PROBE_CRASH_AT_BATCH`` (raise in
that rank's training batch).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def _env_int(name: str, default: int = -1) -> int:
    return int(os.environ.get(name, default))


class Probe(Callback):
    """Writes what a rank saw (anchors, schedule, metrics) and injects signals or crashes on request."""

    def _write(self, trainer: pl.Trainer, event: str, data: dict[str, Any]) -> None:
        folder = os.environ.get("PROBE_DIR")
        if folder:
            path = Path(folder) / f"{event}_rank{trainer.global_rank}.json"
            path.write_text(json.dumps({"rank": trainer.global_rank, "world": trainer.world_size, **data}))

    def __init__(self) -> None:
        self.started = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        # the first batch: after the module's on_train_start (which builds the accumulation schedule)
        if self.started:
            return
        self.started = True
        optimizer = pl_module.optimizers().optimizer
        scheduler = pl_module.lr_schedulers()
        data = {
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "anchors": pl_module.model.model[-1].anchors.tolist(),
            "loss_anchors": pl_module.loss.anchors.tolist(),
            "accumulate_batch": pl_module.accumulation.batch_size,
            "accumulate": pl_module.accumulation.accumulate(10**9),
            "scheduler_last_epoch": scheduler.last_epoch,
            "weight_decay": [g["weight_decay"] for g in optimizer.param_groups],
            "initial_lr": [g["initial_lr"] for g in optimizer.param_groups],
            "run_dir": str(trainer.default_root_dir),
        }
        self._write(trainer, "train_start", data)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        if trainer.global_rank == _env_int("PROBE_CRASH_RANK") and idx >= _env_int("PROBE_CRASH_AT_BATCH", 0):
            raise RuntimeError("probe: injected failure")
        step = _env_int("PROBE_SIGNAL_AT_STEP")
        if step >= 0 and pl_module.accumulation.last_seen == step:
            self._write(trainer, "signal", {"iteration": step, "global_step": trainer.global_step})
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(30)  # the stand-in scontrol ends this process, as SLURM does on requeue

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self._write(trainer, "validation", {"metrics": metrics})


def read_events(folder: Path, event: str) -> dict[int, dict[str, Any]]:
    """Every rank's ``<event>_rank<N>.json`` as ``{rank: data}``."""
    return {d["rank"]: d for d in (json.loads(p.read_text()) for p in sorted(folder.glob(f"{event}_rank*.json")))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment of a command-line subprocess: the probe importable, caches and the probe folder in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PROBE_", "LIGHTNING_YOLO_RUN"))}
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)
    env.update(
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(ROOT)]),
        LIGHTNING_YOLO_CACHE=str(tmp / "cache"),
        PROBE_DIR=str(tmp),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        OMP_NUM_THREADS="1",
        WANDB_MODE="disabled",
    )
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m lightning_yolo <args>`` as a new process (Lightning's DDP relaunches this command per rank)."""
    return subprocess.run(
        [PYTHON, "-m", "lightning_yolo", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def common_args(data: Path, project: Path, imgsz: int = 64, batch: int = 2) -> list[str]:
    return [
        "--model.cfg=yolov5n.yaml",
        f"--data.data={data}",
        f"--data.imgsz={imgsz}",
        f"--data.batch_size={batch}",
        "--data.workers=0",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.callbacks+=ddp_helpers.Probe",
        f"--project={project}",
    ]


def ddp_args(devices: int = 2) -> list[str]:
    return ["--trainer.strategy=ddp", f"--trainer.devices={devices}"]
