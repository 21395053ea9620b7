"""YOLOv5's train.py options: --patience, --save_period, --nosave, --noval, --noplots, --freeze."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fit_helpers import fit_args

from lightning_yolo.callbacks.early_stopping import EarlyStopping
from lightning_yolo.cli import main
from lightning_yolo.module import YOLOModule


def _judge(callback: EarlyStopping, fitness: list[float]) -> int | None:
    """Feed one fitness per epoch; returns the epoch at which the callback stopped the fit (None: never)."""
    trainer = SimpleNamespace(
        callback_metrics={}, sanity_checking=False, state=SimpleNamespace(fn="fit"), should_stop=False
    )
    for epoch, value in enumerate(fitness):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"fitness": torch.tensor(value)}
        callback.on_validation_end(trainer, None)
        if trainer.should_stop:
            return epoch
    return None


def test_early_stopping_follows_yolov5s_rule() -> None:
    # YOLOv5: best_epoch moves when fitness >= best; stop when epoch - best_epoch >= patience
    assert _judge(EarlyStopping(2), [0.1, 0.2, 0.2, 0.1, 0.1, 0.1]) == 4  # epoch 2 ties the best: counts
    assert _judge(EarlyStopping(3), [0.5, 0.4, 0.3, 0.2, 0.1]) == 3
    assert _judge(EarlyStopping(2), [0.0] * 10) is None  # a model stuck at 0 is not stopped (ties improve)
    assert _judge(EarlyStopping(0), [0.5, 0.1, 0.1, 0.1]) is None  # --patience 0 disables it


def test_early_stopping_state_survives_a_resume() -> None:
    first = EarlyStopping(2)
    _judge(first, [0.3, 0.1])
    resumed = EarlyStopping(2)
    resumed.load_state_dict(first.state_dict())
    trainer = SimpleNamespace(
        callback_metrics={"fitness": torch.tensor(0.1)},
        sanity_checking=False,
        state=SimpleNamespace(fn="fit"),
        should_stop=False,
        current_epoch=2,
    )
    resumed.on_validation_end(trainer, None)
    assert trainer.should_stop  # counted from epoch 0, the best before the interruption


@pytest.mark.parametrize(("freeze", "frozen"), [(3, {0, 1, 2}), ([0, 2], {0, 2}), (None, set())])
def test_freeze_takes_yolov5s_meaning(freeze: int | list[int] | None, frozen: set[int]) -> None:
    module = YOLOModule(cfg="yolov5n.yaml", nc=2, freeze=freeze)
    layers = {
        int(name.split(".")[1]): param.requires_grad
        for name, param in module.model.named_parameters()
        if int(name.split(".")[1]) < 5
    }
    assert {i for i, trainable in layers.items() if not trainable} == frozen


def _results(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open() as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_save_period_noval_noplots_and_patience_on_a_fit(tmp_path: Path, tiny_dataset: Path, label_cache: Path):
    main(fit_args(tiny_dataset, tmp_path, 3, "--save_period=2", "--noval=true", "--noplots=true", "--patience=7"))
    run = tmp_path / "tiny"
    weights = sorted(p.name for p in (run / "weights").glob("*.ckpt"))
    assert weights == ["best.ckpt", "epoch0.ckpt", "epoch2.ckpt", "last.ckpt"]
    rows = _results(run)
    assert [r["metrics/mAP_0.5"] == "" for r in rows] == [True, True, False]  # validated after the final epoch only
    assert not list(run.glob("*.jpg")) and not list(run.glob("*.png"))
    states = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"]
    assert any(key.startswith("EarlyStopping") for key in states)


@pytest.mark.slow
def test_nosave_writes_only_after_the_final_epoch(tmp_path: Path, tiny_dataset: Path, label_cache: Path) -> None:
    main(fit_args(tiny_dataset, tmp_path, 2, "--nosave=true", "--save_period=1", "--noplots=true"))
    weights = sorted(p.name for p in (tmp_path / "tiny" / "weights").glob("*.ckpt"))
    assert weights == ["best.ckpt", "epoch1.ckpt", "last.ckpt"] or weights == ["epoch1.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "tiny" / "weights" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_yolov5s_switches_work_bare(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    args = fit_args(tiny_dataset, tmp_path, 1, "--noval", "--nosave", "--noplots", "--exist_ok", "--print_config")
    with pytest.raises(SystemExit):
        main(args)
    printed = capsys.readouterr().out.splitlines()
    assert {"noval: true", "nosave: true", "noplots: true", "exist_ok: true"} <= set(printed)
