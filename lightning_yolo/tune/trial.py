"""One trial: an ordinary ``fit`` with the trial's hyperparameters, in its own run folder
``<tune folder>/trials/<trial id>``, reporting the epoch's metrics and fitness to Ray Tune after every validation.

The fit runs in the Ray worker's process through the same command line as ``python -m lightning_yolo fit``, its
console output going to ``fit.log`` in its run folder; a fit that fails makes its trial fail (Ray Tune records the
error and the tune goes on). Pictures and weights are not kept unless asked for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from lightning_yolo.callbacks.results import METRIC_COLUMNS
from lightning_yolo.evaluation.ap import fitness

METRIC_KEYS = METRIC_COLUMNS
"""YOLOv5's seven result columns, in ``evolve.csv``'s order."""

REPORT_CALLBACK = "lightning_yolo.tune.trial.ReportFitness"
LOG_FILE = "fit.log"
"""The trial's console output, in its run folder."""
ARGS_NOTICE = r"LightningCLI's args parameter"
"""LightningCLI's notice when given arguments in a process started with others (a Ray worker, ``tune`` itself)."""


class TrialFailed(RuntimeError):
    """The trial's fit ended with a non-zero status (its one-line reason is in the trial's log)."""


class ReportFitness(Callback):
    """Report the seven metrics, ``fitness`` and ``epoch`` to Ray Tune after each epoch that validated."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        if "metrics/mAP_0.5" not in metrics or "metrics/mAP_0.5:0.95" not in metrics:
            return  # no validation this epoch
        report = {k: float(metrics[k]) for k in METRIC_KEYS if k in metrics}
        report["fitness"] = float(fitness(report["metrics/mAP_0.5"], report["metrics/mAP_0.5:0.95"]))
        report["epoch"] = trainer.current_epoch + 1
        from ray import tune

        tune.report(report)


@dataclass(frozen=True)
class TrialPlan:
    """What every trial shares: the fit's command line and where and how long to run.

    Attributes:
        fit_args: The ``fit`` arguments given to ``tune`` (configs and flags), without the searched values.
        cwd: The folder ``tune`` was started in; relative paths in ``fit_args`` are relative to it.
        trials_dir: Parent of the trials' run folders.
        base: The starting hyperparameters; a searcher's suggestion overrides some or all of them.
        sections: The fit section (``model`` / ``data``) of each hyperparameter.
        epochs: Epochs per trial.
        plots: Draw the fit's pictures.
        keep_weights: Keep each trial's ``weights/last.ckpt`` and ``best.ckpt``.
    """

    fit_args: tuple[str, ...]
    cwd: str
    trials_dir: str
    base: dict[str, float]
    sections: dict[str, str]
    epochs: int
    plots: bool = False
    keep_weights: bool = False

    def arguments(self, hyp: dict[str, float], name: str) -> list[str]:
        """The trial's full ``fit`` command line (after ``fit``): later flags override the given configs."""
        values = [f"--{self.sections[k]}.{k}={float(v)!r}" for k, v in {**self.base, **hyp}.items()]
        return [
            *self.fit_args,
            *values,
            f"--trainer.max_epochs={self.epochs}",
            f"--trainer.callbacks+={REPORT_CALLBACK}",
            "--trainer.enable_progress_bar=false",
            f"--project={self.trials_dir}",
            f"--name={name}",
            "--exist_ok=true",
            "--nosave=true",
            *(() if self.plots else ("--noplots=true",)),
        ]


def run_fit(args: list[str]) -> None:
    """Run ``fit`` with ``args`` in this process; raises :class:`TrialFailed` when it exits non-zero."""
    from lightning_yolo.cli import main

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=ARGS_NOTICE)
            main(["fit", *args])
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise TrialFailed(f"fit exited with status {stop.code}") from None


def finished_result(tune_dir: Path, trial_id: str) -> dict[str, float] | None:
    """The metrics and fitness that ``tune_dir`` recorded for ``trial_id``, or None (not finished, or recorded on
    another machine)."""
    from lightning_yolo.tune.results import load_records

    for record in load_records(tune_dir):
        if record.trial_id == trial_id:
            return {**dict(zip(METRIC_KEYS, record.metrics, strict=True)), "fitness": record.fitness}
    return None


def run_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """Ray Tune's function trainable: one fit with the suggested hyperparameters ``config``."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    if Path(plan.cwd).is_dir():
        os.chdir(plan.cwd)  # Ray starts a trial in its own folder; the fit's relative paths mean the launch folder
    run_dir = Path(plan.trials_dir) / trial_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / LOG_FILE).open("a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        done = finished_result(Path(plan.trials_dir).parent, trial_id)
        if done is not None:  # finished before a crash that Ray Tune's saved state does not know of yet
            print(f"tune: trial {trial_id} already finished; reporting its recorded result", flush=True)
            tune.report({**done, "epoch": plan.epochs})
            return
        print(f"tune: trial {trial_id} started: {config}", flush=True)
        try:
            run_fit(plan.arguments({k: float(v) for k, v in config.items()}, trial_id))
        except Exception as err:
            print(f"error: {type(err).__name__}: {err}", file=out)
            raise
        finally:
            if not plan.keep_weights:
                shutil.rmtree(run_dir / "weights", ignore_errors=True)
