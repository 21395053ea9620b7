"""The tune folder's results: ``trials.json`` (every finished trial, keyed by trial id, so a trial is never listed
twice), and from it ``evolve.csv`` (YOLOv5's layout: the seven metrics then the hyperparameters, one row per trial
in the order they finished, each field right-aligned in 20 characters) and ``hyp_evolve.yaml``, the best trial's
hyperparameters as a config fragment for ``fit --config``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from lightning_yolo.evaluation.ap import fitness
from lightning_yolo.tune.space import SearchSpace
from lightning_yolo.tune.trial import METRIC_KEYS

RECORDS_FILE = "trials.json"
CSV_FILE = "evolve.csv"
FRAGMENT_FILE = "hyp_evolve.yaml"


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial: its id, its last reported :data:`METRIC_KEYS` values and its hyperparameters."""

    trial_id: str
    metrics: tuple[float, ...]
    hyp: dict[str, float]

    @property
    def fitness(self) -> float:
        return float(fitness(self.metrics[2], self.metrics[3]))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_records(tune_dir: Path) -> list[TrialRecord]:
    """The finished trials recorded in ``tune_dir`` (none when the file is absent)."""
    path = tune_dir / RECORDS_FILE
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    return [TrialRecord(r["trial_id"], tuple(float(x) for x in r["metrics"]), dict(r["hyp"])) for r in rows]


def add_record(tune_dir: Path, record: TrialRecord, space: SearchSpace) -> list[TrialRecord]:
    """Record a finished trial (once: a trial id already recorded is left as it is) and rewrite the outputs."""
    records = load_records(tune_dir)
    if all(r.trial_id != record.trial_id for r in records):
        records.append(record)
        _atomic_write(tune_dir / RECORDS_FILE, json.dumps([asdict(r) for r in records], indent=1))
    write_outputs(tune_dir, records, space)
    return records


def write_outputs(tune_dir: Path, records: Sequence[TrialRecord], space: SearchSpace) -> None:
    """Rewrite ``evolve.csv`` and ``hyp_evolve.yaml`` from ``records`` (nothing when there are none)."""
    if not records:
        return
    _atomic_write(tune_dir / CSV_FILE, evolve_csv(records, space))
    _atomic_write(tune_dir / FRAGMENT_FILE, fragment(records, space))


def evolve_csv(records: Sequence[TrialRecord], space: SearchSpace) -> str:
    """YOLOv5's ``evolve.csv`` text: header and rows of ``%20s`` / ``%20.5g`` fields joined by commas."""
    keys = (*METRIC_KEYS, *space.keys)
    lines = [",".join(f"{k:>20s}" for k in keys)]
    for r in records:
        lines.append(",".join(f"{v:20.5g}" for v in (*r.metrics, *(r.hyp[k] for k in space.keys))))
    return "\n".join(lines) + "\n"


def best_index(records: Sequence[TrialRecord]) -> int:
    """The row of the highest fitness (the first one on a tie, like YOLOv5's ``argmax``)."""
    return int(np.argmax([r.fitness for r in records]))


def fragment(records: Sequence[TrialRecord], space: SearchSpace) -> str:
    """The best trial's hyperparameters as ``model:`` / ``data:`` sections, with its metrics in comments."""
    i = best_index(records)
    best = records[i]
    header = [
        "# lightning_yolo hyperparameter evolution results",
        f"# Best trial: {best.trial_id} (row {i} of {CSV_FILE}), fitness {best.fitness:.5g}",
        f"# Trials finished: {len(records)}",
        "# " + ", ".join(f"{k:>20s}" for k in METRIC_KEYS),
        "# " + ", ".join(f"{v:>20.5g}" for v in best.metrics),
        "# Usage: python -m lightning_yolo fit --config <your config> --config " + FRAGMENT_FILE,
    ]
    body = yaml.safe_dump(space.sections(best.hyp), sort_keys=False)
    return "\n".join(header) + "\n\n" + body
