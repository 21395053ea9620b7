"""SIGKILL a process while it saves checkpoints, many times; the previous checkpoint must always load.

A child process writes ``last.ckpt`` again and again through :class:`AtomicCheckpointIO` (each save a few MB, its
``epoch`` one higher than the last); the parent kills it with SIGKILL at a random moment, then checks that
``last.ckpt`` loads with ``weights_only=True``, holds a complete checkpoint, and is not older than the one seen
before the kill. Temporary files of the killed save never count as ``last``.

    python scripts/kill_during_save.py --iterations 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lightning_yolo.checkpoints.files import TMP_PREFIX, read_checkpoint
from lightning_yolo.checkpoints.io import AtomicCheckpointIO


def save_forever(folder: Path, start: int) -> None:
    """Child: save ``folder/last.ckpt`` with epochs start, start+1, ... until killed."""
    weights = {f"model.layer{i}.weight": torch.randn(256, 256) for i in range(16)}  # ~4 MB per save
    io = AtomicCheckpointIO()
    epoch = start
    while True:
        io.save_checkpoint({"epoch": epoch, "state_dict": weights}, folder / "last.ckpt")
        epoch += 1


def _last_epoch(path: Path) -> int:
    checkpoint = read_checkpoint(path)
    assert len(checkpoint["state_dict"]) == 16, "incomplete state_dict"
    return int(checkpoint["epoch"])


def run(iterations: int, folder: Path, seed: int = 0, max_delay: float = 1.0) -> dict:
    """Kill a saving child ``iterations`` times; returns counts of loadable / monotonic checkpoints."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "last.ckpt"
    results = {"kills": 0, "loadable": 0, "not_older": 0, "stale_temporaries_seen": 0}
    previous = -1
    for _ in range(iterations):
        start = previous + 1
        child = subprocess.Popen([sys.executable, __file__, "--child", str(folder), "--start", str(start)])
        while not path.is_file() or _safe_epoch(path) < start:  # wait until this child has saved once
            time.sleep(0.01)
        time.sleep(rng.uniform(0, max_delay))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        results["kills"] += 1
        results["stale_temporaries_seen"] += len(list(folder.glob(TMP_PREFIX + "*")))
        try:
            epoch = _last_epoch(path)
        except Exception as err:  # noqa: BLE001 - a failure is what this script counts
            print(f"last.ckpt not loadable after kill {results['kills']}: {err}", file=sys.stderr)
            continue
        results["loadable"] += 1
        results["not_older"] += int(epoch >= previous)
        previous = epoch
    return results


def _safe_epoch(path: Path) -> int:
    try:
        return _last_epoch(path)
    except Exception:  # noqa: BLE001 - the file may not be loadable yet only in a failing run; keep waiting
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        save_forever(args.child, args.start)
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="kill_during_save-"))
    results = run(args.iterations, folder, args.seed)
    print(json.dumps(results))
    sys.exit(0 if results["loadable"] == results["not_older"] == results["kills"] else 1)


if __name__ == "__main__":
    main()
