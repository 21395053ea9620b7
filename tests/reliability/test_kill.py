"""kill -9 during training (then ``fit --ckpt_path last``) and during checkpoint saves: the scripts, small."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kill_during_save_always_leaves_a_loadable_previous_checkpoint(tmp_path: Path) -> None:
    results = _script("kill_during_save").run(iterations=3, folder=tmp_path, seed=0, max_delay=0.5)
    assert results["kills"] == results["loadable"] == results["not_older"] == 3


@pytest.mark.slow
def test_kill_during_training_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    report = _script("kill_resume").run(kills=1, epochs=10, folder=tmp_path, seed=0)  # the kill lands mid-fit
    assert report["kills"] == report["resumes_completed"] == 1
    assert report["sigterm_kills"] == 1 and report["sigterm_exit_codes"] == [143]  # the first kill is a SIGTERM
    assert report["epoch_equal"] and report["global_step_equal"] and report["accumulation_equal"]
    assert report["ema_updates_equal"]
    # epoch-end checkpoints + augmentation seeded per (seed, epoch, index): the resumed run redoes the killed epoch
    assert report["max_abs_weight_difference"] < 1e-4
