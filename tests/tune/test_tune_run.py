"""A real tune in local Ray on tiny synthetic data: killed with SIGKILL after 2 finished trials, then re-run to the
end. Checks evolve.csv (YOLOv5's header, 4 rows), the fragment (fit --config gives the best trial's values),
evolve.png, and that finished trials are not run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("optuna")

METRICS = (
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
)


def _fit_args(data: Path) -> list[str]:
    return [
        "--model.cfg=yolov5n.yaml",
        f"--data.data={data}",
        "--data.imgsz=64",
        "--data.batch_size=4",
        "--data.workers=0",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
    ]


def _tune_command(data: Path, project: Path) -> list[str]:
    return [sys.executable, "-m", "lightning_yolo", "tune", *_fit_args(data)] + [
        "--tune.trials=4",
        "--tune.concurrency=2",
        "--tune.num_cpus=2",
        "--tune.seed=1",
        f"--tune.project={project}",
        "--tune.name=evo",
    ]


def _finished(tune_dir: Path) -> list[str]:
    try:
        return [r["trial_id"] for r in json.loads((tune_dir / "trials.json").read_text())]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def _kill_after(proc: subprocess.Popen, tune_dir: Path, trials: int) -> list[str]:
    """SIGKILL the tuner once ``trials`` trials have finished; returns those trials."""
    while len(_finished(tune_dir)) < trials:
        if proc.poll() is not None:
            pytest.fail(f"tune ended early with status {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return _finished(tune_dir)


def _print_config(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "lightning_yolo", "fit", *args, "--print_config"],
        capture_output=True,
        text=True,
        check=True,
    )
    return yaml.safe_load(out.stdout)


@pytest.mark.slow
def test_tune_killed_after_two_trials_resumes_and_writes_yolov5_outputs(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_YOLO_CACHE", str(tmp_path / "cache"))
    tune_dir = tmp_path / "evolve" / "evo"
    command = _tune_command(tiny_dataset, tmp_path / "evolve")
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True
    )
    try:
        before = _kill_after(proc, tune_dir, 2)
    finally:
        try:  # the local Ray's helpers that outlive their killed parent for a while
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert len(before) >= 2

    rerun = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stdout + rerun.stderr

    after = _finished(tune_dir)
    assert len(after) == 4 and len(set(after)) == 4 and after[: len(before)] == before
    for trial_id in before:  # finished before the kill: never started again
        log = (tune_dir / "trials" / trial_id / "fit.log").read_text()
        assert log.count(f"trial {trial_id} started") == 1, log
    assert not list((tune_dir / "trials").glob("*/weights/*.ckpt"))  # no weights kept per trial

    keys = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr", "box")
    keys += ("cls", "cls_pw", "obj", "obj_pw", "anchor_t", "fl_gamma", "hsv_h", "hsv_s", "hsv_v", "degrees")
    keys += ("translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup", "copy_paste")
    header = (tune_dir / "evolve.csv").read_text().splitlines()[0]
    assert header == ("%20s," * (7 + len(keys)) % (*METRICS, *keys)).rstrip(",")
    rows = np.loadtxt(tune_dir / "evolve.csv", delimiter=",", skiprows=1, ndmin=2)
    assert rows.shape == (4, 7 + len(keys))
    assert (tune_dir / "evolve.png").stat().st_size > 0

    # the fragment gives fit the best row's hyperparameters (YOLOv5's fitness; the first row on a tie)
    best = int(np.argmax(0.1 * rows[:, 2] + 0.9 * rows[:, 3]))
    fragment = tune_dir / "hyp_evolve.yaml"
    config = _print_config(*_fit_args(tiny_dataset), f"--config={fragment}")
    sections = {k: ("model" if i < 14 else "data") for i, k in enumerate(keys)}
    got = np.array([config[sections[k]][k] for k in keys])
    np.testing.assert_allclose(got, rows[best, 7:], rtol=1e-4, atol=1e-9)  # evolve.csv keeps 5 significant digits
    best_id = after[best]
    trial_config = yaml.safe_load((tune_dir / "trials" / best_id / "config.yaml").read_text())
    assert got.tolist() == [trial_config[sections[k]][k] for k in keys]  # what that trial trained with, exactly
