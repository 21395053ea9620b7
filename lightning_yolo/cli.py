"""Command line: ``python -m lightning_yolo fit | validate | test --config X.yaml``, and ``predict | export | convert``.

The LightningCLI builds the data module first; its class names and count flow to the model by argument links,
as do the image and batch sizes that the loss gains and the nominal-batch accumulation depend on. Every run writes
one folder (``<project>/<name>``, numbered like YOLOv5: ``exp``, ``exp2``, ...) holding ``config.yaml``,
``results.csv`` and ``weights/{last,best}.ckpt``.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_yolo.callbacks.autoanchor import AutoAnchor
from lightning_yolo.callbacks.early_stopping import EarlyStopping
from lightning_yolo.callbacks.plots import RunPlots
from lightning_yolo.callbacks.results import ResultsCSV
from lightning_yolo.callbacks.throughput import Throughput
from lightning_yolo.callbacks.val_outputs import ValOutputs
from lightning_yolo.callbacks.wandb import WandbLogging, configure_loggers_for_run
from lightning_yolo.checkpoints.callbacks import RunCheckpoints
from lightning_yolo.checkpoints.files import read_checkpoint
from lightning_yolo.checkpoints.io import AtomicCheckpointIO
from lightning_yolo.checkpoints.runs import (
    RunError,
    claim_run_dir,
    keep_previous_config,
    launch_rank,
    new_run_dir,
    rank_label,
    remove_if_unused,
    resume_checkpoint,
    run_dir_of_checkpoint,
    run_dir_of_hpc_checkpoint,
    shared_run_dir,
)
from lightning_yolo.data.datamodule import YOLODataModule
from lightning_yolo.errors import CheckpointError, ConfigError, NonFiniteError
from lightning_yolo.models.autobatch import autobatch
from lightning_yolo.models.yolo import load_config, plan_layers
from lightning_yolo.module import YOLOModule, weights_architecture
from lightning_yolo.settings import TRAINER_RULES, check_settings, load_yaml

log = logging.getLogger("lightning_yolo")

CKPT_HINT = "; use --model.weights for weights"

DEFAULT_PROJECT = {"fit": "runs/train", "validate": "runs/val", "test": "runs/test"}


def architecture_stride(cfg: str | dict) -> int:
    """Check an architecture row by row without building it, and return its largest output stride (32 for P5
    models, 64 for P6), so a bad ``--model.cfg`` fails before the dataset is scanned or a layer allocated.

    The data module pads images to multiples of the stride; reading it from the YAML keeps the data module independent
    of the model (levels P3..P(2+nl) have strides 2**3 .. 2**(2+nl)).
    """
    arch, source = load_config(cfg)
    plan_layers(arch, int(arch.get("ch", 3)), source)
    detect_inputs = arch["head"][-1][0]
    return 2 ** (2 + len(detect_inputs))


@dataclass
class RunState:
    """What the command line learned before a run failed: the run folders it created and the trainer."""

    claimed: list[Path] = field(default_factory=list)
    trainer: Any = None

    def stopped_by_sigterm(self, err: BaseException | None = None) -> bool:
        """Whether a SIGTERM stopped the run: Lightning's handler fired, or ``err`` says that loader workers were
        terminated (the same signal reaches the whole process group, and a dead worker can surface first)."""
        if self.trainer is not None and bool(self.trainer.received_sigterm):
            return True
        return err is not None and "killed by signal: Terminated" in str(err)

    def interruption_note(self) -> str:
        """Where the fit stopped and how to continue, from the run's checkpoint policy; empty outside a fit."""
        callbacks = self.trainer.checkpoint_callbacks if self.trainer is not None else []
        notes = [cb.interruption_note(self.trainer) for cb in callbacks if isinstance(cb, RunCheckpoints)]
        return notes[0] if notes else ""


class YOLOCLI(LightningCLI):
    """LightningCLI with the data -> model links, YOLOv5-style run folders and safe checkpoint loading.

    Args:
        state: Filled in as the run goes, so that the caller can still act when the run fails.
        *args, **kwargs: LightningCLI's.
    """

    def __init__(self, *args: Any, state: RunState | None = None, **kwargs: Any) -> None:
        self.state = state if state is not None else RunState()
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # `predict` is the detect.py-style tool in TOOLS (files, folders, videos), not Trainer.predict.
        return {k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate", "test")}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.nc", "model.nc", apply_on="instantiate")
        parser.link_arguments("data.names", "model.names", apply_on="instantiate")
        parser.link_arguments("data.imgsz", "model.imgsz", apply_on="instantiate")  # rounded to the stride
        parser.link_arguments("data.batch_size", "model.batch_size")
        parser.link_arguments("data.quad", "model.quad")
        if "verbose" in parser.get_defaults():
            parser.set_defaults(verbose=False)  # validate / test print val.py's table, not Lightning's
        parser.add_lightning_class_args(AutoAnchor, "autoanchor")
        parser.add_lightning_class_args(RunPlots, "plots")
        parser.add_lightning_class_args(WandbLogging, "wandb")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(ValOutputs, "val")
        parser.add_argument("--project", type=str | None, default=None, help="Parent folder of run folders.")
        parser.add_argument("--name", type=str, default="exp", help="Run folder name (numbered when it exists).")
        parser.add_argument(
            "--exist_ok", type=bool, nargs="?", const=True, default=False, help="Reuse an existing run folder."
        )
        parser.add_argument(
            "--patience", type=int, default=100, help="Stop after this many epochs without a better fitness (0: never)."
        )
        parser.add_argument(
            "--save_period", type=int, default=-1, help="Also keep weights/epochN.ckpt every N epochs (-1: none)."
        )
        parser.add_argument(
            "--nosave",
            type=bool,
            nargs="?",
            const=True,
            default=False,
            help="Write last/best only after the final epoch.",
        )
        parser.add_argument(
            "--noval", type=bool, nargs="?", const=True, default=False, help="Validate only after the final epoch."
        )
        parser.add_argument(
            "--noplots", type=bool, nargs="?", const=True, default=False, help="Draw no pictures at all."
        )
        parser.add_argument(
            "--allow_partial_weights",
            type=bool,
            nargs="?",
            const=True,
            default=False,
            help="Let validate/test run a model that --model.weights only partly initialises.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check ``--ckpt_path`` once, before Lightning reads the checkpoint's hyperparameters.

        ``last`` is resolved to the newest ``last.ckpt`` / ``hpc_ckpt_N.ckpt`` of the run here, and a missing,
        empty, garbage or hostile file fails with its name and reason instead of an unpickling traceback. The
        checkpoint read here is handed to the trainer's CheckpointIO, which does not read it again.
        """
        super().parse_arguments(parser, args)
        self.checked_checkpoint: tuple[str, dict[str, Any]] | None = None
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt:
            return
        if ckpt == "last":
            if subcommand != "fit":
                raise RunError("ckpt_path=last is for resuming fit; give validate/test a checkpoint path")
            config = self.config[subcommand]
            ckpt = str(resume_checkpoint(_project(config, subcommand), config.name))  # or a newer hpc_ckpt_N
            config.ckpt_path = ckpt
        self.checked_checkpoint = (ckpt, read_checkpoint(ckpt, hint=CKPT_HINT))

    def before_instantiate_classes(self) -> None:
        subcommand = self.subcommand
        if subcommand is None:
            return
        config = self.config[subcommand]
        check_settings("trainer", config.trainer, TRAINER_RULES)
        run_dir = self._resolve_run(config, _project(config, subcommand), subcommand)
        config.trainer.default_root_dir = str(run_dir)
        config.data.stride = architecture_stride(self._architecture(config))
        if config.get("weights_only") is None:
            config.weights_only = True
        self.trainer_defaults["callbacks"] = self._run_callbacks(config, run_dir) if subcommand == "fit" else []
        if config.noplots:
            config.plots.enabled = False
            config.wandb.max_images = 0
        if subcommand == "fit" and config.noval and (config.trainer.max_epochs or -1) > 0:
            config.trainer.check_val_every_n_epoch = config.trainer.max_epochs  # the final epoch only
        resume_from = config.get("ckpt_path") if subcommand == "fit" else None
        configure_loggers_for_run(config.trainer.logger, run_dir, resume_from)
        log.info("run folder: %s", run_dir)

    @staticmethod
    def _run_callbacks(config: Any, run_dir: Path) -> list[Any]:
        """What every fit gets: checkpoints (with ``--save_period`` / ``--nosave``), results.csv, early stopping."""
        checkpoints = RunCheckpoints(run_dir / "weights", save_period=config.save_period, final_only=config.nosave)
        callbacks = [checkpoints, ResultsCSV(run_dir)]
        if config.patience > 0:
            callbacks.append(EarlyStopping(config.patience))
        return callbacks

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        if not self.config_init[self.subcommand].trainer.get("plugins"):
            # Same-folder atomic saves, loud write failures, no non-finite weights, weights_only loads.
            kwargs.setdefault("plugins", [AtomicCheckpointIO(preloaded=self.checked_checkpoint)])
        return super().instantiate_trainer(**kwargs)

    def _resolve_run(self, config: Any, project: Path, subcommand: str) -> Path:
        """The run folder: a resumed fit continues in its checkpoint's run, anything else gets the next free one."""
        ckpt = config.get("ckpt_path")
        if ckpt is not None and subcommand == "fit":
            owner = run_dir_of_checkpoint(Path(ckpt)) or run_dir_of_hpc_checkpoint(Path(ckpt))
            if owner is not None:
                return owner
        # DDP ranks that rank 0 launches reuse its folder instead of numbering their own
        return shared_run_dir(lambda: self._claim(project, config.name, config.exist_ok))

    def _claim(self, project: Path, name: str, exist_ok: bool) -> Path:
        """Rank 0 creates the run folder atomically; other ranks (torchrun, srun) only name it: they never write."""
        if launch_rank() != 0:
            return new_run_dir(project, name, exist_ok)
        existed = exist_ok and (project / name).is_dir()
        run_dir = claim_run_dir(project, name, exist_ok)
        if not existed:
            self.state.claimed.append(run_dir)
        return run_dir

    @staticmethod
    def _architecture(config: Any) -> str | dict:
        """``--model.cfg``, else the architecture stored in ``--model.weights``, else yolov5s (as the module does)."""
        return weights_architecture(config.model.cfg, config.model.weights)  # also an exported model's

    def after_instantiate_classes(self) -> None:
        self.state.trainer = self.trainer
        if self.datamodule.batch_size == -1:
            self._autobatch()
        if self.subcommand in ("validate", "test"):
            self._refuse_partial_model()
        if self.subcommand == "fit" and self.checked_checkpoint is not None:
            self._compare_with_resumed(self.checked_checkpoint[1].get("hyper_parameters", {}))

    def _autobatch(self) -> None:
        """``--data.batch_size -1``: the batch that fills 60% of the device's free memory (YOLOv5's AutoBatch)."""
        if self.trainer.world_size > 1:
            raise ConfigError("data.batch_size=-1 (AutoBatch) works on one device only; give a batch size per device")
        device = self.trainer.strategy.root_device
        chosen = autobatch(self.model.model, self.datamodule.imgsz, device)
        self.datamodule.batch_size = self.model.hparams.batch_size = chosen

    def _refuse_partial_model(self) -> None:
        """validate / test of a model that its weights do not fully initialise is an error, unless asked for."""
        config = self.config[self.subcommand]
        if config.get("ckpt_path") or self.model.transferred is None or config.allow_partial_weights:
            return
        done, total = self.model.transferred
        if done < total:
            raise ConfigError(
                f"{config.model.weights}: only {done}/{total} tensors of the model were initialised from it "
                f"(--model.cfg {_describe_cfg(config.model.cfg)}, nc={self.model.model.model[-1].nc}); "
                f"{self.subcommand} would measure a partly random model. Leave --model.cfg out to use the "
                "file's architecture, or pass --allow_partial_weights true if that is what you mean"
            )

    def _compare_with_resumed(self, hparams: dict[str, Any]) -> None:
        """Warn when a resumed fit trains at another image size or on other classes, and keep the old config."""
        changes = []
        if hparams.get("imgsz") not in (None, self.datamodule.imgsz):
            changes.append(f"image size {hparams['imgsz']} -> {self.datamodule.imgsz}")
        if hparams.get("names") is not None and list(hparams["names"]) != list(self.datamodule.names):
            changes.append(f"class names {_short(hparams['names'])} -> {_short(self.datamodule.names)}")
        if not changes:
            return
        run_dir = Path(self.config[self.subcommand].trainer.default_root_dir)
        kept = keep_previous_config(run_dir)
        log.warning(
            "resuming %s with %s%s",
            self.config[self.subcommand].ckpt_path,
            "; ".join(changes),
            f" (the previous config is kept as {kept})" if kept else "",
        )


def _describe_cfg(cfg: Any) -> str:
    return "from the weights" if cfg is None else ("<dict>" if isinstance(cfg, dict) else str(cfg))


def _short(names: Any, shown: int = 4) -> str:
    names = [str(n) for n in names]
    return "[" + ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "") + "]"


def _project(config: Any, subcommand: str) -> Path:
    """The parent folder of the subcommand's run folders: ``--project``, else ``runs/train`` / ``runs/val`` / ..."""
    return Path(config.get("project") or DEFAULT_PROJECT.get(subcommand, "runs/other"))


KNOWN_ERRORS: tuple[type[Exception], ...] = (RunError, CheckpointError, ConfigError, NonFiniteError, FileNotFoundError)


def _known_errors() -> tuple[type[Exception], ...]:
    """Exceptions whose message is the whole story: printed as one line, no traceback."""
    from lightning_yolo.data.config import DatasetError
    from lightning_yolo.models.weights import WeightsError

    return (*KNOWN_ERRORS, DatasetError, WeightsError)


FRAMEWORK_NOISE = re.compile(r"^(💡 Tip:|GPU available:|TPU available:|HPU available:|`weights_only` was not set)")
"""Lightning's info lines that say nothing about the run: product tips, absent accelerators."""


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not FRAMEWORK_NOISE.match(str(record.getMessage()))


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _CurrentStream(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stdout`` / ``sys.stderr`` is when a record arrives (so a caller
    that swaps them, a test harness or a notebook, still gets the lines)."""

    def __init__(self, name: str) -> None:
        self.stream_name = name
        super().__init__()

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value: Any) -> None:  # the stream is always the current one
        pass


def route_logging() -> None:
    """Progress to stdout, problems to stderr: a failed command's stderr is its one ``error:`` line (and any
    warnings), while the run's story stays on stdout. Done once; later calls keep the handlers."""
    root = logging.getLogger()
    if any(getattr(h, "lightning_yolo", False) for h in root.handlers):
        return
    info = _CurrentStream("stdout")
    info.addFilter(_Below(logging.WARNING))
    problems = _CurrentStream("stderr")
    problems.setLevel(logging.WARNING)
    for handler in (info, problems):
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.lightning_yolo = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        framework = logging.getLogger(name)  # Lightning writes to its own stderr handler: route it like ours
        for handler in [h for h in framework.handlers if isinstance(h, logging.StreamHandler)]:
            framework.removeHandler(handler)
        framework.propagate = True


def quiet_framework() -> None:
    """Keep the console about the run: no framework tips, accelerator roll calls or deprecation notices."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
        for child in ("utilities.rank_zero", "accelerators.cuda"):
            logging.getLogger(f"{name}.{child}").addFilter(_DropNoise())
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*is deprecated")
    warnings.filterwarnings("ignore", message=r"No seed found")  # validate / test draw nothing at random
    # The EMA copy is deliberately kept in eval mode; Lightning would warn about it at every fit start.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Epoch-level values logged without sync_dist (metrics, val losses, lr) are already equal on every DDP rank.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True")


def _exit_interrupted(state: RunState) -> None:
    """Exit with 143 (128 + SIGTERM): a stopped fit must not look like a finished one to ``fit && deploy``."""
    note = state.interruption_note()
    print(f"error: {rank_label()}: interrupted by SIGTERM{': ' + note if note else ''}", file=sys.stderr)
    sys.exit(143)


def _remove_unused(claimed: list[Path]) -> None:
    """Remove run folders this process created when the run failed before writing anything but its config."""
    for run_dir in claimed:
        if remove_if_unused(run_dir):
            log.info("removed the run folder %s: the run failed before it wrote anything", run_dir)


def check_yaml_arguments(args: list[str]) -> None:
    """Refuse a YAML file given on the command line (``--config X.yaml``, ``--trainer.logger X.yaml``, ...) that is
    too large, too deep or an alias bomb, before jsonargparse parses it. Other arguments are left to the parser.
    """
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if value.endswith((".yaml", ".yml")) and Path(value).is_file():
            load_yaml(value)


TOOLS = {
    "convert": "lightning_yolo.export.convert",
    "predict": "lightning_yolo.predict",
    "export": "lightning_yolo.export",
    "benchmark": "lightning_yolo.export.benchmark",
    "serve": "lightning_yolo.serve.run",
    "tune": "lightning_yolo.tune.run",
}
"""Subcommands outside LightningCLI (no Trainer): each names the module whose ``main(argv) -> int`` runs it.
The module is imported only when its subcommand is called, so ``fit`` never pays for an exporter's imports."""


def run_tool(name: str, args: list[str]) -> int:
    """Run the tool subcommand ``name`` with the arguments after it; returns its exit status."""
    return importlib.import_module(TOOLS[name]).main(args)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; known input errors exit with status 2 and one message, no traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    route_logging()
    quiet_framework()
    if args and args[0] in TOOLS:
        sys.exit(run_tool(args[0], args[1:]))
    state = RunState()
    try:
        check_yaml_arguments(args)
        YOLOCLI(
            YOLOModule,
            YOLODataModule,
            args=argv,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            # the model summary is YOLOv5's line, printed by the module at fit start
            trainer_defaults={
                "max_epochs": 100,
                "logger": False,
                "num_sanity_val_steps": 0,
                "enable_model_summary": False,
            },
            parser_kwargs={
                "description": "lightning_yolo: YOLOv5 training on PyTorch Lightning. "
                "Also: `python -m lightning_yolo predict|export|benchmark|convert|serve|tune --help`."
            },
            state=state,
        )
    except SIGTERMException:
        # Lightning stops at the next batch boundary and raises SystemExit(None), which would exit with status 0.
        _exit_interrupted(state)
    except _known_errors() as err:
        _remove_unused(state.claimed)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if state.stopped_by_sigterm(err):  # e.g. loader workers stopped by the same signal before the fit loop
            _exit_interrupted(state)
        _remove_unused(state.claimed)
        # Under DDP every rank prints its own traceback; this line says which process failed first, and why.
        print(f"{rank_label()}: error: {type(err).__name__}: {err}", file=sys.stderr)
        raise
