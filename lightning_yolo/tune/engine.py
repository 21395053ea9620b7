"""Ray Tune for ``tune``: Ray in this process or a cluster, the searcher and scheduler, the Tuner, and restoring an
interrupted tune from the experiment state that Ray Tune keeps in ``<tune folder>/ray``.

Imported only once Ray is known to be installed.
"""

from __future__ import annotations

import json
import logging
import os
import pickletools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from lightning_yolo.tune.options import TuneOptions
from lightning_yolo.tune.results import TrialRecord, add_record, load_records
from lightning_yolo.tune.searcher import EvolveSearcher
from lightning_yolo.tune.space import SearchSpace
from lightning_yolo.tune.trial import LOG_FILE, METRIC_KEYS, TrialPlan, run_trial

log = logging.getLogger("lightning_yolo")

EXPERIMENT = "ray"
"""Ray Tune's experiment folder inside the tune folder: the state a re-run restores from."""
OBJECT_STORE_BYTES = 100 << 20
"""The local Ray's object store: trials exchange only their settings and metrics."""


@dataclass(frozen=True)
class TuneJob:
    """Everything a tune needs once its settings are checked."""

    options: TuneOptions
    space: SearchSpace
    base: dict[str, float]
    plan: TrialPlan
    tune_dir: Path


def start_ray(options: TuneOptions) -> None:
    """Join ``options.address``, or start Ray in this process: no dashboard, a small object store, trial output
    kept in the trials' folders rather than echoed here."""
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if options.address:
        ray.init(address=options.address, **common)
        return
    ray.init(
        num_cpus=options.num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        **common,
    )


def gpus_per_trial(options: TuneOptions) -> float:
    """``--tune.gpus``, else one GPU per trial when Ray has any."""
    if options.gpus is not None:
        return options.gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


class RecordTrials(tune.Callback):
    """Write each finished trial to the tune folder's results as soon as it finishes, and say so.

    A trial's hyperparameters are its suggestion over ``base``: a searcher that varies only the mutable keys
    (Optuna) leaves the others at the fit config's values, which the trial's fit used.
    """

    def __init__(
        self, tune_dir: Path, space: SearchSpace, trials: int, trials_dir: str, base: dict[str, float]
    ) -> None:
        self.tune_dir, self.space, self.trials, self.trials_dir = tune_dir, space, trials, trials_dir
        self.base = base

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if any(k not in result for k in METRIC_KEYS):
            log.warning("trial %s finished without validation metrics; it is left out of the results", trial)
            return
        hyp = {**{k: self.base[k] for k in self.space.keys}, **{k: float(v) for k, v in trial.config.items()}}
        record = TrialRecord(trial.trial_id, tuple(float(result[k]) for k in METRIC_KEYS), hyp)
        records = add_record(self.tune_dir, record, self.space)
        best = max(r.fitness for r in records)
        log.info(
            "trial %s finished: fitness %.5g (best %.5g, %d/%d trials)",
            trial.trial_id,
            record.fitness,
            best,
            len(records),
            self.trials,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.warning("trial %s failed; its log: %s", trial.trial_id, Path(self.trials_dir) / trial.trial_id / LOG_FILE)


def trial_dirname(trial: Any) -> str:
    return trial.trial_id


def make_searcher(job: TuneJob, done: list[TrialRecord]) -> Any:
    """YOLOv5's GA, or Optuna's TPE over the mutable keys' limits (starting from the fit config's values); both
    informed of the trials ``done`` before this experiment."""
    options, space = job.options, job.space
    if options.searcher == "ga":
        searcher = EvolveSearcher(space, job.base, seed=options.seed, parent=options.parent)
        finished = [{"trial_id": r.trial_id, "hyp": space.vector(r.hyp).tolist(), "fitness": r.fitness} for r in done]
        searcher.set_state({"suggested": len(done), "pending": {}, "finished": finished})
        return searcher
    from ray.tune.search.optuna import OptunaSearch

    keys = space.mutable
    genes = dict(zip(space.keys, space.genes, strict=True))
    domain = {k: tune.uniform(genes[k].lower, genes[k].upper) for k in keys}
    start = {k: min(max(job.base[k], genes[k].lower), genes[k].upper) for k in keys}
    points = [{k: r.hyp[k] for k in keys} for r in done] or [start]
    rewards = [r.fitness for r in done] or None
    return OptunaSearch(
        domain, metric="fitness", mode="max", points_to_evaluate=points, evaluated_rewards=rewards, seed=options.seed
    )


def make_scheduler(options: TuneOptions, epochs: int) -> Any:
    """ASHA over the per-epoch fitness, or None (every trial runs all its epochs)."""
    if not options.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    grace = min(options.grace_period, epochs)
    return ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=grace, reduction_factor=3)


def trainable(job: TuneJob, gpus: float) -> Any:
    return tune.with_resources(tune.with_parameters(run_trial, plan=job.plan), {"cpu": job.options.cpus, "gpu": gpus})


def build_tuner(job: TuneJob, gpus: float, done: list[TrialRecord]) -> Any:
    """A new Tuner whose experiment state lives in ``<tune folder>/ray``, for the trials not ``done`` yet."""
    options = job.options
    tune_config = tune.TuneConfig(
        metric="fitness",
        mode="max",
        search_alg=make_searcher(job, done),
        scheduler=make_scheduler(options, job.plan.epochs),
        num_samples=options.trials - len(done),
        max_concurrent_trials=options.concurrency,
        reuse_actors=False,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=EXPERIMENT,
        storage_path=str(job.tune_dir.resolve()),
        callbacks=[RecordTrials(job.tune_dir, job.space, options.trials, job.plan.trials_dir, job.base)],
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0),
        verbose=0,
    )
    return tune.Tuner(trainable(job, gpus), tune_config=tune_config, run_config=run_config)


def saved_state_intact(experiment: Path, json_searcher: bool) -> bool:
    """Whether Ray Tune's newest saved state in ``experiment`` is complete: Ray Tune copies it into place file by
    file, so a kill during a copy can leave an empty or cut file, from which it would silently start afresh.

    Args:
        json_searcher: The searcher saves JSON (the GA) rather than a pickle (Optuna).
    """
    if not tune.Tuner.can_restore(str(experiment)):
        return False
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return False
    session = states[-1].stem.removeprefix("experiment_state-")
    searcher = experiment / f"searcher-state-{session}.pkl"  # Ray Tune's name, whatever the content
    try:
        json.loads(states[-1].read_text())
        searcher_ok = bool(json.loads(searcher.read_text())) if json_searcher else _complete_pickle(searcher)
    except (OSError, ValueError):
        return False
    return searcher_ok and _complete_pickle(experiment / f"search_gen_state-{session}.json")


def _complete_pickle(path: Path) -> bool:
    """Whether ``path`` holds a whole pickle stream, read opcode by opcode without loading anything."""
    try:
        ops = list(pickletools.genops(path.read_bytes()))
    except (OSError, ValueError):
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


def run_tuner(job: TuneJob) -> tuple[int, int]:
    """Start or resume the tune and run it to the end; returns ``(finished, errored)`` trial counts.

    Ray Tune saves the experiment state (trials and the searcher) after every step of its loop, and a re-run after
    a crash restores it: finished trials are kept, unfinished ones start again, errored ones stay errored. When that
    state was cut short by the crash, the tune goes on from the finished trials in ``trials.json`` instead (the
    incomplete state is kept aside as ``ray.interrupted-N``).
    """
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "0"  # save the experiment state at every step, not every 10 s
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the tune folder has its own results
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no progress tables, the trial lines say it
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # no Ray result files: ours
    # a failed trial is one warning line naming its fit.log (RecordTrials); Ray's own report adds its traceback
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    experiment = job.tune_dir.resolve() / EXPERIMENT
    done = load_records(job.tune_dir)
    if len(done) >= job.options.trials:
        return len(done), 0
    start_ray(job.options)
    try:
        gpus = gpus_per_trial(job.options)
        if saved_state_intact(experiment, json_searcher=job.options.searcher == "ga"):
            log.info("resuming the tune in %s (%d trials finished)", job.tune_dir, len(done))
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable(job, gpus), resume_unfinished=True)
        else:
            if experiment.exists():
                aside = _set_aside(experiment)
                log.warning(
                    "resuming from the %d finished trials: Ray Tune's saved state is incomplete (kept as %s)",
                    len(done),
                    aside,
                )
            tuner = build_tuner(job, gpus, done)
        grid = tuner.fit()
        errored = sum(1 for r in grid if r.error is not None)
        return len(grid) - errored, errored
    finally:
        ray.shutdown()


def _set_aside(experiment: Path) -> Path:
    n = 1
    while experiment.with_name(f"{experiment.name}.interrupted-{n}").exists():
        n += 1
    return experiment.rename(experiment.with_name(f"{experiment.name}.interrupted-{n}"))
