"""W&B logging: the offline run of a short fit holds the metric history, the pictures, the boxes and the config;
the checkpoint names the run so that a resumed fit continues it; logger configs land in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_yolo.callbacks.wandb import (
    configure_loggers_for_run,
    wandb_boxes,
    wandb_run_id_from_checkpoint,
)
from lightning_yolo.evaluation.table import results_rows

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "logger"


# ------------------------------------------------------------------------------------------------ fast tests
def _parse_logger(*fragments: str):
    from pytorch_lightning import Trainer
    from pytorch_lightning.cli import LightningArgumentParser

    parser = LightningArgumentParser()
    parser.add_lightning_class_args(Trainer, "trainer")
    args = ["--trainer.logger", str(CONFIGS / fragments[0])]
    for extra in fragments[1:]:
        args += ["--trainer.logger+", str(CONFIGS / extra)]
    return parser, parser.parse_args(args)


def _save_checkpoint(path: Path, callbacks: dict) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "callbacks": callbacks}, path)
    return path


def test_run_id_is_read_back_from_the_callback_state(tmp_path):
    ckpt = _save_checkpoint(
        tmp_path / "a.ckpt", {"ModelCheckpoint{}": {"best": 1.0}, "WandbLogging": {"wandb_run_id": "r1"}}
    )
    assert wandb_run_id_from_checkpoint(ckpt) == "r1"
    assert wandb_run_id_from_checkpoint(_save_checkpoint(tmp_path / "b.ckpt", {})) is None


def test_logger_fragments_parse_and_are_placed_in_the_run_folder(tmp_path):
    parser, config = _parse_logger("wandb.yaml", "tensorboard.yaml")
    run_dir = tmp_path / "runs" / "train" / "exp3"
    ckpt = _save_checkpoint(tmp_path / "last.ckpt", {"WandbLogging": {"wandb_run_id": "abc123"}})
    configure_loggers_for_run(config.trainer.logger, run_dir, ckpt)
    wandb_args, tb_args = (entry.init_args for entry in config.trainer.logger)
    assert (wandb_args.save_dir, wandb_args.name, wandb_args.id, wandb_args.resume) == (
        str(run_dir),
        "exp3",
        "abc123",
        "allow",
    )
    assert (tb_args.save_dir, tb_args.name, tb_args.version) == (str(run_dir), "", "")
    wandb_logger, tb_logger = parser.instantiate_classes(config).trainer.logger
    assert Path(wandb_logger.save_dir) == run_dir and wandb_logger.version == "abc123"  # no W&B run started
    assert Path(tb_logger.log_dir) == run_dir  # events (and the CLI's config.yaml) right in the run folder


def test_explicit_logger_settings_are_kept(tmp_path):
    config = {"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": {"save_dir": "elsewhere", "id": "x"}}
    ckpt = _save_checkpoint(tmp_path / "last.ckpt", {"WandbLogging": {"wandb_run_id": "abc123"}})
    configure_loggers_for_run(config, tmp_path / "exp", ckpt)
    assert config["init_args"]["save_dir"] == "elsewhere" and config["init_args"]["id"] == "x"
    configure_loggers_for_run(False, tmp_path / "exp", ckpt)  # no logger: nothing to do


def test_wandb_boxes_are_pixel_boxes_with_names_and_confidences():
    detections = torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.9, 1.0], [0.0, 0.0, 5.0, 5.0, 0.1, 0.0]])
    labels = torch.tensor([[0.0, 0.5, 0.25, 0.5, 0.5]])  # [cls, x, y, w, h] normalised
    boxes = wandb_boxes(detections, labels, (64, 128), {0: "a", 1: "b"}, conf=0.25)
    (pred,) = boxes["predictions"]["box_data"]  # the 0.1-confidence box is left out
    assert pred["position"] == {"minX": 10.0, "minY": 20.0, "maxX": 30.0, "maxY": 60.0}
    assert pred["class_id"] == 1 and pred["box_caption"] == "b 0.90" and pred["domain"] == "pixel"
    assert pred["scores"]["conf"] == pytest.approx(0.9)
    (truth,) = boxes["ground_truth"]["box_data"]
    assert truth["position"] == {"minX": 32.0, "minY": 0.0, "maxX": 96.0, "maxY": 32.0}  # 128 wide, 64 high
    assert truth["box_caption"] == "a" and boxes["ground_truth"]["class_labels"] == {0: "a", 1: "b"}


def test_class_table_has_the_validation_tables_rows():
    results = {
        "seen": torch.tensor(5),
        "instances": torch.tensor(7),
        "precision": torch.tensor(0.5),
        "recall": torch.tensor(0.25),
        "map50": torch.tensor(0.4),
        "map": torch.tensor(0.2),
        "class_ids": torch.tensor([0, 2]),
        "class_images": torch.tensor([3.0, 2.0]),
        "class_instances": torch.tensor([4.0, 3.0]),
        "class_precision": torch.tensor([0.5, 0.5]),
        "class_recall": torch.tensor([0.25, 0.25]),
        "class_ap50": torch.tensor([0.5, 0.3]),
        "class_ap": torch.tensor([0.25, 0.15]),
    }
    rows = results_rows(results, ["cat", "dog", "emu"])
    assert [r[:3] for r in rows] == [["all", 5, 7], ["cat", 3, 4], ["emu", 2, 3]]
    assert rows[2][3:] == pytest.approx([0.5, 0.25, 0.3, 0.15])


# ------------------------------------------------------------------------------------------------ offline runs
def _offline_run(run_dir: Path, run_id: str) -> list[Path]:
    return sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))


@pytest.mark.slow
def test_offline_run_holds_metric_history_pictures_boxes_table_and_config(
    callback_run, read_wandb_records, wandb_history
):
    first = callback_run.first
    (folder,) = _offline_run(callback_run.run_dir, first.wandb_id)[:1]
    records = read_wandb_records(folder / f"run-{first.wandb_id}.wandb")
    history = wandb_history(records)
    epochs = [json.loads(row["epoch"]) for row in history if "metrics/mAP_0.5" in row]
    assert epochs == [0, 1]  # one validation per epoch
    trained = [row for row in history if "train/box_loss" in row]
    assert len(trained) == 2 and all(k in trained[0] for k in ("train/obj_loss", "train/cls_loss", "x/lr0"))
    assert any("x/images_per_s" in row for row in history)
    logged = {key.rsplit("/", 1)[0] for row in history for key in row if key.endswith("/_type")}  # media keys
    pictures = ["Labels/labels", "Labels/labels_correlogram", "Mosaics/train_batch2", "Validation/val_batch2_pred"]
    pictures += ["Results/PR_curve", "Results/confusion_matrix", "Results/results"]
    assert {*pictures, "val/predictions", "val/classes"} <= logged
    media = folder / "files" / "media"
    counts = {}
    for path in (media / "images").rglob("*.*"):
        group = path.relative_to(media / "images").parts[0]  # keys "Results/PR_curve" are stored in folders
        counts[group] = counts.get(group, 0) + 1
    # RunPlots' pictures once each, and 4 images with boxes at each of the 2 validations ("val/predictions")
    assert counts == {"Labels": 2, "Mosaics": 3, "Validation": 6, "Results": 6, "val": 8}
    assert len(list((media / "metadata" / "boxes2D" / "val").glob("*.json"))) == 8
    tables = sorted((media / "table" / "val").glob("classes_*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["class", "images", "instances", "P", "R", "mAP50", "mAP50-95"]
    assert [row[0] for row in table["data"]] == ["all", "circle", "rectangle", "triangle", "cross"]
    boxes = [json.loads(row["val/predictions/all_boxes"]) for row in history if "val/predictions/all_boxes" in row]
    assert boxes and all("ground_truth" in b and "predictions" in b for b in boxes[0])
    config = {
        item.key: item.value_json
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert json.loads(config["config"])["data"]["imgsz"] == 64  # the run folder's config.yaml
    assert json.loads(config["nc"]) == 4  # and the hyperparameters Lightning logs
    artifacts = [
        r.artifact for r in records if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model"
    ]
    assert {a.name for a in artifacts} == {f"model-{first.wandb_id}"}  # log_model=True: best and last at the end
    assert {alias for a in artifacts for alias in a.aliases} >= {"best", "latest"}


@pytest.mark.slow
def test_resumed_fit_continues_the_same_wandb_run(callback_run, read_wandb_records, wandb_history):
    first, resumed = callback_run.first, callback_run.resumed
    assert wandb_run_id_from_checkpoint(callback_run.run_dir / "weights" / "last.ckpt") == first.wandb_id
    assert resumed.wandb_id == first.wandb_id
    folders = _offline_run(callback_run.run_dir, first.wandb_id)
    assert len(folders) == 2  # offline, each process writes its own folder; `wandb sync` joins them by id
    history = wandb_history(read_wandb_records(folders[-1] / f"run-{first.wandb_id}.wandb"))
    assert [json.loads(row["epoch"]) for row in history if "metrics/mAP_0.5" in row] == [2]
    assert resumed.callbacks["wandb"].stored_run_id == first.wandb_id
