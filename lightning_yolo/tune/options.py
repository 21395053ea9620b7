"""The ``tune`` command's settings: ``--tune.*`` flags, and every other argument, which is a ``fit`` setting
(``--config``, ``--model.*``, ``--data.*``, ``--trainer.*``, ...) that each trial's fit receives.

Both are checked before Ray starts: a bad value is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from lightning_yolo.errors import ConfigError
from lightning_yolo.settings import DATA_RULES, MODEL_RULES, TRAINER_RULES, check_settings, parse_yaml
from lightning_yolo.tune.trial import ARGS_NOTICE

SEARCHERS = ("ga", "optuna")


@dataclass(frozen=True)
class TuneOptions:
    """The ``--tune.*`` settings (each field is the flag ``--tune.<field>``, its help the flag's help)."""

    trials: int = field(default=300, metadata={"help": "Trials in all (YOLOv5's ``--evolve`` generations)."})
    epochs: int | None = field(
        default=None, metadata={"help": "Epochs per trial (default: the fit's ``trainer.max_epochs``)."}
    )
    searcher: str = field(
        default="ga", metadata={"help": "``ga`` (YOLOv5's genetic algorithm) or ``optuna`` (Optuna's TPE)."}
    )
    parent: str = field(default="single", metadata={"help": "GA parent selection: ``single`` or ``weighted``."})
    concurrency: int = field(default=1, metadata={"help": "Trials running at the same time."})
    cpus: float = field(default=1.0, metadata={"help": "CPUs reserved per trial."})
    gpus: float | None = field(
        default=None, metadata={"help": "GPUs per trial (default: 1 when the Ray cluster has GPUs, else 0)."}
    )
    keys: tuple[str, ...] = field(
        default=(), metadata={"help": "Hyperparameters to search (default: YOLOv5's searched set)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the searcher."})
    asha: bool = field(
        default=False, metadata={"help": "Stop weak trials early with the ASHA scheduler (per-epoch fitness)."}
    )
    grace_period: int = field(default=1, metadata={"help": "ASHA: epochs every trial runs before it may be stopped."})
    address: str | None = field(
        default=None,
        metadata={"help": "Ray cluster to join (``auto`` or ``host:6379``); default: start Ray in this process."},
    )
    num_cpus: int | None = field(
        default=None,
        metadata={"help": "CPUs of the local Ray (default: all of this machine's); ignored with ``address``."},
    )
    project: str = field(default="runs/evolve", metadata={"help": "Parent folder of tune folders."})
    name: str = field(
        default="exp", metadata={"help": "Tune folder name; re-running with the same name resumes that tune."}
    )
    plots: bool = field(default=False, metadata={"help": "Draw each trial's pictures."})
    keep_weights: bool = field(default=False, metadata={"help": "Keep each trial's weights."})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _keys(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def build_parser() -> argparse.ArgumentParser:
    """The ``--tune.*`` flags; ``--help`` lists them."""
    parser = _Parser(
        prog="python -m lightning_yolo tune",
        allow_abbrev=False,
        description="YOLOv5's hyperparameter evolution on Ray Tune. Every argument that is not --tune.* is a fit "
        "setting (--config X.yaml, --model.*, --data.*, --trainer.*) given to every trial.",
    )
    types: dict[str, Any] = {"keys": _keys, "asha": _bool, "plots": _bool, "keep_weights": _bool}
    choices = {"searcher": SEARCHERS, "parent": ("single", "weighted")}
    for f in fields(TuneOptions):
        kind = types.get(f.name) or {"epochs": int, "gpus": float, "address": str, "num_cpus": int}.get(f.name)
        kind = kind or type(f.default)
        extra = {"nargs": "?", "const": True} if kind is _bool else {}
        parser.add_argument(
            f"--tune.{f.name}",
            dest=f.name,
            type=kind,
            default=f.default,
            choices=choices.get(f.name),
            help=f.metadata.get("help", "").replace("``", ""),
            **extra,
        )
    return parser


def parse_args(argv: Sequence[str]) -> tuple[TuneOptions, list[str]]:
    """Split the command line into the tune options (checked) and the fit arguments (left as given)."""
    namespace, fit_args = build_parser().parse_known_args(list(argv))
    unknown = [a.split("=", 1)[0] for a in fit_args if a.startswith("--tune.")]
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]} (see python -m lightning_yolo tune --help)")
    options = TuneOptions(**vars(namespace))
    check_options(options)
    return options, fit_args


def check_options(options: TuneOptions) -> None:
    """Raise ConfigError naming the first ``--tune.*`` value out of range."""
    rules = {
        "trials": options.trials >= 1,
        "epochs": options.epochs is None or options.epochs >= 1,
        "concurrency": options.concurrency >= 1,
        "cpus": options.cpus > 0,
        "gpus": options.gpus is None or options.gpus >= 0,
        "grace_period": options.grace_period >= 1,
        "num_cpus": options.num_cpus is None or options.num_cpus >= 1,
        "name": bool(options.name) and "/" not in options.name and options.name not in (".", ".."),
    }
    for key, ok in rules.items():
        if not ok:
            raise ConfigError(f"tune.{key}: invalid value {getattr(options, key)!r}")


def read_fit_config(fit_args: Sequence[str]) -> dict[str, Any]:
    """The fit config that ``fit_args`` give, parsed by the ``fit`` command itself (nothing is built or run).

    Raises:
        ConfigError: The fit command refuses the arguments (its message, on one line), or a value is out of range.
    """
    from lightning_yolo.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ARGS_NOTICE)
        try:
            main(["fit", *fit_args, "--print_config"])
        except SystemExit as stop:
            code = stop.code
    if code not in (0, None):
        raise ConfigError(f"fit settings: {_one_line(err.getvalue())}")
    config = parse_yaml(out.getvalue(), "fit --print_config")
    for section, rules in (("model", MODEL_RULES), ("data", DATA_RULES), ("trainer", TRAINER_RULES)):
        check_settings(section, config.get(section) or {}, rules)
    return config


def _one_line(text: str) -> str:
    """The error of a failed parse, without its usage text, as one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        return lines[-1] if lines else "invalid arguments"
    return " ".join([lines[start].removeprefix("error:").strip(), *lines[start + 1 :]])
