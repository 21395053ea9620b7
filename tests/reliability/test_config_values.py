"""Nonsensical settings stop the CLI before any heavy work: non-zero exit, one line naming the key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fit_helpers import fit_args

from lightning_yolo.cli import main
from lightning_yolo.data.datamodule import YOLODataModule
from lightning_yolo.errors import ConfigError
from lightning_yolo.module import YOLOModule


@pytest.mark.parametrize(
    ("arg", "key"),
    [
        ("--data.batch_size=0", "data.batch_size"),
        ("--data.imgsz=0", "data.imgsz"),
        ("--model.lr0=-0.01", "model.lr0"),
        ("--model.momentum=1.5", "model.momentum"),
        ("--trainer.max_epochs=0", "trainer.max_epochs"),
    ],
)
def test_bad_values_exit_naming_the_key(
    arg: str, key: str, tiny_dataset: Path, tmp_path: Path, label_cache: Path, capsys, monkeypatch
) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the settings were checked")

    monkeypatch.setattr("lightning_yolo.module.DetectionModel", no_model)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(tiny_dataset, tmp_path, 1, arg))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not label_cache.exists()  # no dataset scan happened


@pytest.mark.parametrize(
    ("arg", "key"),
    [
        ("--model.lr00=0.1", "lr00"),
        ("--data.batch_size=four", "batch_size"),
        ("--trainer.max_epochs=1.5", "max_epochs"),
    ],
)
def test_unknown_keys_and_wrong_types_exit_naming_the_key(
    arg: str, key: str, tiny_dataset: Path, tmp_path: Path, label_cache: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(tiny_dataset, tmp_path, 1, arg))
    assert exit_info.value.code != 0
    assert key in capsys.readouterr().err
    assert not label_cache.exists()


def test_model_value_check_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.anchor_t must be > 0"):
        YOLOModule(cfg="yolov5n.yaml", nc=1, anchor_t=0.0)


def test_image_size_off_the_stride_is_rounded_with_a_warning(
    tiny_dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_yolo"):
        data = YOLODataModule(data=str(tiny_dataset), imgsz=70, stride=32)
    assert data.imgsz == 96
    assert "imgsz=70 is not a multiple of the max stride 32: using 96" in caplog.text


def test_data_value_check_is_a_config_error(tiny_dataset: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.workers must be >= 0, got -1"):
        YOLODataModule(data=str(tiny_dataset), workers=-1)
