"""End-to-end runs of the command line on a tiny dataset: fit, resume, validate, config files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from fit_helpers import fit_args, run_tiny_fit

from lightning_yolo.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def fitted(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny fit of 2 epochs shared by the tests below; returns the run folder."""
    return run_tiny_fit(tiny_dataset, tmp_path_factory.mktemp("runs"), 2)


def test_fit_writes_one_run_folder(fitted: Path) -> None:
    assert (fitted / "config.yaml").is_file()
    rows = _rows(fitted)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    for column in ("train/box_loss", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/obj_loss", "x/lr0", "fitness"):
        assert rows[-1][column] != "", column
    assert (fitted / "weights" / "last.ckpt").is_file() and (fitted / "weights" / "best.ckpt").is_file()


def test_checkpoints_load_weights_only_and_carry_the_architecture(fitted: Path) -> None:
    ckpt = torch.load(fitted / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["cfg"]["backbone"] and hp["weights"] is None and hp["nc"] == len(hp["names"])
    assert "ema.updates" in ckpt["state_dict"] and "model.model.24.anchors" in ckpt["state_dict"]
    assert ckpt["accumulation"]["last_seen"] == 2 * 2 - 1  # 2 epochs of 2 batches, iterations 0..3


def test_training_loss_is_finite_and_lr_follows_warmup(fitted: Path) -> None:
    rows = _rows(fitted)
    assert all(float(r["train/box_loss"]) > 0 for r in rows)
    # bias lr (group 0) falls from warmup_bias_lr 0.1 during warmup; the other groups rise from 0
    assert float(rows[0]["x/lr0"]) > float(rows[0]["x/lr1"])


def test_resume_continues_from_last_checkpoint(fitted: Path, tiny_dataset: Path, monkeypatch) -> None:
    project = fitted.parent
    monkeypatch.setenv("LIGHTNING_YOLO_CACHE", str(project / "cache"))
    before = torch.load(fitted / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    main(fit_args(tiny_dataset, project, 3, "--ckpt_path=last"))
    after = torch.load(fitted / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    assert [r["epoch"] for r in _rows(fitted)] == ["0", "1", "2"]  # same run folder, one new row
    assert not (project / "tiny2").exists()
    assert after["epoch"] == before["epoch"] + 1
    assert after["accumulation"]["last_seen"] == before["accumulation"]["last_seen"] + 2
    assert int(after["state_dict"]["ema.updates"]) > int(before["state_dict"]["ema.updates"])


def test_last_checkpoint_is_written_after_epochs_without_an_optimiser_step(
    tiny_dataset: Path, tmp_path: Path, label_cache
) -> None:
    # 2 batches per epoch while the warmup raises the accumulation towards 64 / 4 = 16: epoch 5 (iterations 10
    # and 11) is the first without an optimiser step, and it must still leave its own last.ckpt
    main(fit_args(tiny_dataset, tmp_path, 6))
    ckpt = torch.load(tmp_path / "tiny" / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["accumulation"]["last_opt_step"] < 10  # no step in the last epoch
    assert ckpt["epoch"] == 5 and ckpt["accumulation"]["last_seen"] == 6 * 2 - 1


def test_resume_without_checkpoint_fails_loudly(tmp_path: Path, tiny_dataset: Path, label_cache, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(tiny_dataset, tmp_path, 1, "--ckpt_path=last"))
    assert exit_info.value.code == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


def test_validate_prints_the_val_table(fitted: Path, tiny_dataset: Path, tmp_path: Path, label_cache, capsys) -> None:
    args = [
        "validate",
        "--model.cfg=yolov5n.yaml",
        f"--data.data={tiny_dataset}",
        "--data.imgsz=64",
        "--data.workers=0",
        "--trainer.enable_progress_bar=false",
        f"--ckpt_path={fitted / 'weights' / 'best.ckpt'}",
        f"--project={tmp_path}",
    ]
    main(args)
    out = capsys.readouterr().out
    assert "mAP50-95" in out and "all" in out


@pytest.mark.parametrize(
    "files",
    [
        ["quickstart.yaml"],
        ["coco128.yaml"],
        ["quickstart.yaml", "hyp/scratch-low.yaml"],
        ["quickstart.yaml", "hyp/scratch-med.yaml"],
        ["quickstart.yaml", "hyp/scratch-high.yaml"],
    ],
)
def test_every_config_parses(files: list[str], capsys) -> None:
    args = ["fit"] + [f"--config={CONFIGS / f}" for f in files] + ["--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    assert "model:" in capsys.readouterr().out


def test_every_config_file_is_covered() -> None:
    covered = {
        "quickstart.yaml",
        "coco128.yaml",
        "hyp/scratch-low.yaml",
        "hyp/scratch-med.yaml",
        "hyp/scratch-high.yaml",
    }
    found = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if "logger" not in p.parts}
    assert found <= covered, found - covered
