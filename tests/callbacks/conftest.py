"""One shared short fit (and its resumption) with every run callback and an offline W&B logger.

The fit trains yolov5n with deliberately bad anchors on a tiny synthetic dataset at 64 px for two epochs, then a
second Trainer resumes it from ``last.ckpt`` for a third epoch. Tests read what the two fits left behind: the
run folder's pictures, the anchors, and the offline W&B runs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

BAD_ANCHORS = [[200, 210, 220, 230, 240, 250]] * 3  # px: far larger than any 64-px label, BPR 0
CONFIG_YAML = "seed_everything: 0\nmodel:\n  cfg: yolov5n.yaml\ndata:\n  imgsz: 64\n"


@dataclass
class Fit:
    """What one fit left behind."""

    module: Any
    trainer: Any
    callbacks: dict[str, Any]
    wandb_id: str
    anchors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class CallbackRun:
    """The shared fit, its resumption, and a validate run of the result (pictures only, in ``val_dir``)."""

    run_dir: Path
    data_yaml: Path
    first: Fit
    resumed: Fit
    val_dir: Path
    val_plots: Any


def bad_anchor_cfg() -> dict:
    """The yolov5n architecture with anchors no label fits."""
    from importlib.resources import files

    cfg = yaml.safe_load((files("lightning_yolo.models") / "configs" / "yolov5n.yaml").read_text(encoding="utf-8"))
    cfg["anchors"] = [list(row) for row in BAD_ANCHORS]
    return cfg


def module_anchors(module: Any) -> dict[str, torch.Tensor]:
    """Copies of the anchors the model, its EMA copy and the loss hold."""
    anchors = {"model": module.model.model[-1].anchors, "loss": module.loss.anchors}
    if module.ema is not None:
        anchors["ema"] = module.ema.module.model[-1].anchors
    return {k: v.detach().cpu().clone() for k, v in anchors.items()}


def _fit(run_dir: Path, data_yaml: Path, max_epochs: int, ckpt_path: Path | None, wandb_id: str | None) -> Fit:
    import pytorch_lightning as pl
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    from lightning_yolo.callbacks.autoanchor import AutoAnchor
    from lightning_yolo.callbacks.plots import RunPlots
    from lightning_yolo.callbacks.results import ResultsCSV
    from lightning_yolo.callbacks.throughput import Throughput
    from lightning_yolo.callbacks.wandb import WandbLogging
    from lightning_yolo.checkpoints.callbacks import RunCheckpoints
    from lightning_yolo.data.datamodule import YOLODataModule
    from lightning_yolo.module import YOLOModule

    pl.seed_everything(0)
    data = YOLODataModule(str(data_yaml), imgsz=64, batch_size=2, workers=0)
    # conf_thres 0 keeps every candidate box, so that an untrained model still has true positives to draw curves of
    module = YOLOModule(bad_anchor_cfg(), nc=data.nc, names=data.names, imgsz=64, batch_size=2, conf_thres=0.0)
    callbacks = {
        "autoanchor": AutoAnchor(),
        "plots": RunPlots(),
        "wandb": WandbLogging(max_images=4),
        "throughput": Throughput(),
    }
    logger = WandbLogger(
        project="lightning_yolo_tests", save_dir=str(run_dir), name=run_dir.name, id=wandb_id, log_model=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[*callbacks.values(), ResultsCSV(run_dir), RunCheckpoints(run_dir / "weights")],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    fit = Fit(module, trainer, callbacks, logger.experiment.id, module_anchors(module))
    wandb.finish()
    return fit


def _validate(val_dir: Path, data_yaml: Path, module: Any) -> tuple[Path, Any]:
    """``trainer.validate`` of a trained module with RunPlots only, as ``python -m lightning_yolo validate`` runs."""
    import pytorch_lightning as pl

    from lightning_yolo.callbacks.plots import RunPlots
    from lightning_yolo.data.datamodule import YOLODataModule

    plots = RunPlots()
    trainer = pl.Trainer(
        accelerator="cpu",
        default_root_dir=str(val_dir),
        logger=False,
        callbacks=[plots],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, YOLODataModule(str(data_yaml), imgsz=64, batch_size=2, workers=0))
    return val_dir, plots


@pytest.fixture(scope="session")
def callback_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallbackRun]:
    """Fit two epochs, then resume for a third, with every run callback and an offline W&B logger."""
    from lightning_yolo.callbacks.wandb import wandb_run_id_from_checkpoint
    from lightning_yolo.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("callback_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: extra threads only contend on a busy machine
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LIGHTNING_YOLO_CACHE", str(root / "cache"))
            mp.setenv("WANDB_MODE", "offline")
            mp.setenv("WANDB_SILENT", "true")
            mp.setenv("WANDB_CONSOLE", "off")
            mp.setenv("WANDB_DISABLE_GIT", "true")
            for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
                mp.setenv(name, str(root / "wandb_home" / name.lower()))
            data_yaml = generate_synthetic_dataset(root / "data", sizes={"train": 8, "val": 12}, seed=3)
            run_dir = root / "runs" / "exp"
            run_dir.mkdir(parents=True)
            (run_dir / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")  # as the CLI leaves it
            first = _fit(run_dir, data_yaml, max_epochs=2, ckpt_path=None, wandb_id=None)
            last = run_dir / "weights" / "last.ckpt"
            stored_id = wandb_run_id_from_checkpoint(last)  # what the CLI passes to the logger on resume
            resumed = _fit(run_dir, data_yaml, max_epochs=3, ckpt_path=last, wandb_id=stored_id)
            val_dir, val_plots = _validate(root / "runs" / "val" / "exp", data_yaml, resumed.module)
            yield CallbackRun(run_dir, data_yaml, first, resumed, val_dir, val_plots)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ offline W&B runs
def _read_wandb_records(path: Path) -> list[Any]:
    """Every record of an offline ``run-<id>.wandb`` file, as ``wandb_internal_pb2.Record`` messages.

    The file is a ``:W&B`` header (4 magic bytes, 2 bytes, a version byte) followed by a LevelDB-style log:
    32 KiB blocks of chunks, each with a 7-byte header (crc32, little-endian length, type: 1 full, 2 first,
    3 middle, 4 last); a block's tail shorter than a header is padding.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def _wandb_history(records: list[Any]) -> list[dict[str, str]]:
    """The history rows of a run's records, each a dict of key -> JSON value text."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows


@pytest.fixture
def read_wandb_records():
    """``read_wandb_records(path) -> records``: the records of an offline ``.wandb`` file."""
    return _read_wandb_records


@pytest.fixture
def wandb_history():
    """``wandb_history(records) -> rows``: the history rows (key -> JSON text) among a run's records."""
    return _wandb_history
