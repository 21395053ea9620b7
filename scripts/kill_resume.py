"""Kill a tiny training run at random moments (SIGKILL, or SIGTERM as a scheduler sends it), resume it with
``--ckpt_path last`` each time, and compare with an uninterrupted run.

An uninterrupted fit and an interrupted one (killed ``--kills`` times after its first checkpoint exists, each time
resumed with ``fit --ckpt_path last``) train the same tiny synthetic dataset; ``--sigterm-share`` of the kills
(every other one by default) are SIGTERM, which must end the fit with exit status 143. The script prints how many
resumes completed, the exit statuses after SIGTERM and the largest absolute difference between the final weights
(model and EMA) of the two runs.

    python scripts/kill_resume.py --kills 10 --epochs 80 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def fit_command(data: Path, project: Path, epochs: int, resume: bool) -> list[str]:
    """The ``python -m lightning_yolo fit`` command line of the tiny run."""
    return [
        sys.executable,
        "-m",
        "lightning_yolo",
        "fit",
        "--model.cfg=yolov5n.yaml",
        f"--data.data={data}",
        "--data.imgsz=64",
        "--data.batch_size=4",
        "--data.workers=0",
        f"--trainer.max_epochs={epochs}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--project={project}",
        "--name=run",
        *(["--ckpt_path=last"] if resume else []),
    ]


def _run_to_end(cmd: list[str], env: dict) -> None:
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def interrupted_fit(
    data: Path, project: Path, epochs: int, kills: int, rng: random.Random, env: dict, sigterm_share: float = 0.5
) -> dict:
    """Fit, killing the process ``kills`` times at random moments after a checkpoint exists; resume each time.

    Kill ``i`` is SIGTERM when ``round((i + 1) * sigterm_share) > round(i * sigterm_share)`` with halves rounded up
    (every other one at 0.5, starting with SIGTERM), else SIGKILL.
    """
    last = project / "run" / "weights" / "last.ckpt"
    done, resumes, seen_epochs, sigterm_exits = 0, 0, [], []
    resume = False
    while True:
        child = subprocess.Popen(
            fit_command(data, project, epochs, resume), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if done < kills:
            start_mtime = last.stat().st_mtime if last.exists() else 0.0
            while child.poll() is None and (not last.exists() or last.stat().st_mtime == start_mtime):
                time.sleep(0.05)  # wait for a new checkpoint of this process, then kill at a random moment
            time.sleep(rng.uniform(0.0, 3.0))
            if child.poll() is None:
                term = math.floor((done + 1) * sigterm_share + 0.5) > math.floor(done * sigterm_share + 0.5)
                os.kill(child.pid, signal.SIGTERM if term else signal.SIGKILL)
                code = child.wait(timeout=300)
                if term:
                    sigterm_exits.append(code)
                done += 1
                seen_epochs.append(int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]))
                resume, resumes = True, resumes + 1
                continue
        if child.wait() != 0:
            raise RuntimeError(f"resumed fit failed with exit code {child.returncode}")
        return {
            "kills": done,
            "sigterm_kills": len(sigterm_exits),
            "sigterm_exit_codes": sorted(set(sigterm_exits)),
            "resumes_completed": resumes,
            "checkpoint_epoch_at_each_kill": seen_epochs,
        }


def max_difference(a: Path, b: Path) -> dict:
    """Largest absolute weight difference between two checkpoints, and which counters match exactly."""
    ca = torch.load(a, map_location="cpu", weights_only=True)
    cb = torch.load(b, map_location="cpu", weights_only=True)
    diffs = {
        k: (ca["state_dict"][k].double() - cb["state_dict"][k].double()).abs().max().item()
        for k in ca["state_dict"]
        if ca["state_dict"][k].is_floating_point()
    }
    worst = max(diffs, key=diffs.get)
    return {
        "max_abs_weight_difference": diffs[worst],
        "worst_tensor": worst,
        "tensors_exact": sum(v == 0 for v in diffs.values()),
        "tensors": len(diffs),
        "epoch_equal": ca["epoch"] == cb["epoch"],
        "global_step_equal": ca["global_step"] == cb["global_step"],
        "accumulation_equal": ca.get("accumulation") == cb.get("accumulation"),
        "ema_updates_equal": bool((ca["state_dict"]["ema.updates"] == cb["state_dict"]["ema.updates"]).all()),
    }


def run(kills: int, epochs: int, folder: Path, seed: int = 0, sigterm_share: float = 0.5) -> dict:
    """Uninterrupted and interrupted fits of the same tiny dataset in ``folder``; returns the comparison."""
    from lightning_yolo.data.synthetic import generate_synthetic_dataset

    data = generate_synthetic_dataset(folder / "data", sizes={"train": 16, "val": 4}, seed=1)
    env = {**os.environ, "LIGHTNING_YOLO_CACHE": str(folder / "cache")}
    _run_to_end(fit_command(data, folder / "straight", epochs, resume=False), env)
    report = interrupted_fit(data, folder / "killed", epochs, kills, random.Random(seed), env, sigterm_share)
    report |= max_difference(folder / "straight/run/weights/last.ckpt", folder / "killed/run/weights/last.ckpt")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigterm-share", type=float, default=0.5, help="Share of the kills sent as SIGTERM.")
    parser.add_argument("--folder", type=Path, default=None, help="Work folder (default: a temporary one).")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="kill_resume-"))
    print(json.dumps(run(args.kills, args.epochs, folder, args.seed, args.sigterm_share)))


if __name__ == "__main__":
    main()
