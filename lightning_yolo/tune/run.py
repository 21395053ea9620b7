"""``python -m lightning_yolo tune``: YOLOv5's ``train.py --evolve`` on Ray Tune.

Every argument except ``--tune.*`` is a fit setting. The tune folder ``<tune.project>/<tune.name>``
(``runs/evolve/exp``) receives ``evolve.csv``, ``hyp_evolve.yaml`` (the best hyperparameters as a config fragment
for ``fit --config``), ``evolve.png``, ``trials/<trial id>/`` (each trial's run folder) and ``ray/`` (Ray Tune's
experiment state). Running the same command again resumes an interrupted tune.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning_yolo.errors import ConfigError

log = logging.getLogger("lightning_yolo")

INSTALL_HINT = "error: tune needs Ray Tune and Optuna: pip install -e '.[tune]'"
SETTINGS_FILE = "tune.json"
RESUMABLE = ("trials", "epochs", "searcher", "parent", "keys", "seed", "asha", "grace_period")
"""Settings a re-run must repeat to resume a tune (the others, such as concurrency or the cluster, may change)."""


def extra_installed() -> bool:
    """Whether the ``tune`` extra (Ray Tune and Optuna) can be imported."""
    try:
        import optuna  # noqa: F401
        import ray.tune  # noqa: F401
    except ImportError:
        return False
    return True


def prepare(argv: Sequence[str]) -> Any:
    """Check every setting and describe the tune, before Ray starts; raises ConfigError for a bad one."""
    from lightning_yolo.tune.engine import TuneJob
    from lightning_yolo.tune.options import parse_args, read_fit_config
    from lightning_yolo.tune.space import base_hyp, search_space
    from lightning_yolo.tune.trial import TrialPlan

    options, fit_args = parse_args(argv)
    space = search_space(options.keys)
    config = read_fit_config(fit_args)
    base = base_hyp(space, config)
    check_files(config)
    epochs = options.epochs or int((config.get("trainer") or {}).get("max_epochs") or -1)
    if epochs < 1:
        raise ConfigError("tune.epochs: give the epochs per trial (the fit config trains without an epoch limit)")
    tune_dir = Path(options.project) / options.name
    settings = {**{k: v for k, v in asdict(options).items() if k in RESUMABLE}, "keys": list(space.keys)}
    settings.update(epochs=epochs, fit_args=list(fit_args))
    claim_tune_dir(tune_dir, settings)
    plan = TrialPlan(
        fit_args=tuple(fit_args),
        cwd=str(Path.cwd()),
        trials_dir=str((tune_dir / "trials").resolve()),
        base=base,
        sections={k: g.section for k, g in zip(space.keys, space.genes, strict=True)},
        epochs=epochs,
        plots=options.plots,
        keep_weights=options.keep_weights,
    )
    return TuneJob(options, space, base, plan, tune_dir)


def check_files(config: dict[str, Any]) -> None:
    """Refuse a missing or unreadable weights file or dataset yaml now, rather than once in every trial."""
    from lightning_yolo.data.config import DatasetError, load_dataset_config
    from lightning_yolo.models.weights import WeightsError, load_weights

    weights = (config.get("model") or {}).get("weights")
    data = str((config.get("data") or {}).get("data") or "")
    if weights and not Path(weights).is_file():
        raise ConfigError(f"model.weights: {weights} does not exist")
    if data.endswith((".yaml", ".yml")) and not Path(data).is_file():
        raise ConfigError(f"data.data: {data} does not exist")
    try:
        if weights:
            load_weights(weights)
        if data.endswith((".yaml", ".yml")):
            load_dataset_config(data)
    except (WeightsError, DatasetError) as err:
        raise ConfigError(str(err)) from None


def claim_tune_dir(tune_dir: Path, settings: dict[str, Any]) -> None:
    """Create the tune folder with its settings, or check that a re-run repeats them (so it resumes that tune)."""
    path = tune_dir / SETTINGS_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            raise ConfigError(
                f"{tune_dir}: this tune was started with other settings ({', '.join(changed)}); repeat its command "
                "to resume it, or choose another --tune.name"
            )
        return
    tune_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1))


def finish(job: Any, finished: int, errored: int) -> int:
    """Write the plot, print where the results are; 1 when no trial finished."""
    from lightning_yolo.tune.plot import plot_evolve
    from lightning_yolo.tune.results import CSV_FILE, FRAGMENT_FILE, best_index, load_records, write_outputs

    records = load_records(job.tune_dir)
    write_outputs(job.tune_dir, records, job.space)
    if not records:
        logs = job.tune_dir / "ray"
        print(f"error: {job.tune_dir}: no trial finished ({errored} failed; logs in {logs})", file=sys.stderr)
        return 1
    plot_evolve(records, job.space, job.tune_dir / "evolve.png")
    best = records[best_index(records)]
    if errored:
        log.warning("%d trial(s) failed; their logs are in %s", errored, job.tune_dir / "ray")
    log.info(
        "tune finished: %d trials, best fitness %.5g (trial %s)\nresults: %s, %s, evolve.png in %s\n"
        "usage: python -m lightning_yolo fit ... --config %s",
        len(records),
        best.fitness,
        best.trial_id,
        CSV_FILE,
        FRAGMENT_FILE,
        job.tune_dir,
        job.tune_dir / FRAGMENT_FILE,
    )
    return 0


def main(argv: Sequence[str]) -> int:
    """Run ``tune``; returns the exit status (2 for bad settings or a missing extra, with one ``error:`` line)."""
    if not extra_installed():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    try:
        job = prepare(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from lightning_yolo.tune.engine import run_tuner

    finished, errored = run_tuner(job)
    return finish(job, finished, errored)
