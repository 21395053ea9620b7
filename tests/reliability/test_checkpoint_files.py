"""Bad and hostile checkpoint files at every load site: ``--ckpt_path``, ``--model.weights``, ``load_from_checkpoint``.

Each failure is one message naming the file (and, for another architecture, the mismatched keys); a hostile pickle
never runs, also with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; nothing silently starts a fresh run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fit_helpers import fit_args
from reliability_helpers import write_bad_checkpoint

from lightning_yolo.checkpoints.io import AtomicCheckpointIO
from lightning_yolo.cli import main
from lightning_yolo.errors import CheckpointError
from lightning_yolo.module import YOLOModule

UNREADABLE = ["empty", "truncated", "garbage", "hostile"]


@pytest.fixture(params=[False, True], ids=["default", "force-no-weights-only"])
def force_unsafe(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the test plain and with torch's switch that turns weights-only loading off where not explicit."""
    if request.param:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return request.param


def _cli_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("kind", UNREADABLE)
def test_bad_ckpt_path_is_an_error_naming_the_file(
    kind: str, force_unsafe: bool, fitted_ckpt: Path, tiny_dataset: Path, tmp_path: Path, label_cache, capsys
) -> None:
    bad, canary = write_bad_checkpoint(kind, tmp_path, fitted_ckpt)
    err = _cli_error(fit_args(tiny_dataset, tmp_path / "runs", 1, f"--ckpt_path={bad}"), capsys)
    assert str(bad) in err
    assert not canary.exists()
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made: no silent fresh start


@pytest.mark.parametrize("kind", UNREADABLE)
def test_bad_initial_weights_are_an_error_naming_the_file(
    kind: str, force_unsafe: bool, fitted_ckpt: Path, tiny_dataset: Path, tmp_path: Path, label_cache, capsys
) -> None:
    bad, canary = write_bad_checkpoint(kind, tmp_path, fitted_ckpt)
    err = _cli_error(fit_args(tiny_dataset, tmp_path / "runs", 1, f"--model.weights={bad}"), capsys)
    assert str(bad) in err
    assert not canary.exists()


@pytest.mark.parametrize("kind", [*UNREADABLE, "mismatched"])
def test_load_from_checkpoint_refuses_bad_files_naming_them(
    kind: str, force_unsafe: bool, fitted_ckpt: Path, tmp_path: Path
) -> None:
    bad, canary = write_bad_checkpoint(kind, tmp_path, fitted_ckpt)
    with pytest.raises(CheckpointError, match=str(bad)) as info:
        YOLOModule.load_from_checkpoint(bad, weights_only=False)  # asking for unsafe loading changes nothing
    assert not canary.exists()
    if kind == "mismatched":
        assert "model.model.0.conv.weight" in str(info.value) and "model.model.1.conv.weight" in str(info.value)


def test_checkpoint_io_loads_weights_only_whatever_is_asked(
    force_unsafe: bool, fitted_ckpt: Path, tmp_path: Path
) -> None:
    bad, canary = write_bad_checkpoint("hostile", tmp_path, fitted_ckpt)
    with pytest.raises(CheckpointError, match=str(bad)):
        AtomicCheckpointIO().load_checkpoint(bad, weights_only=False)
    assert not canary.exists()


def test_another_nc_is_an_error_listing_the_keys(fitted_ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match=str(fitted_ckpt)) as info:
        YOLOModule.load_from_checkpoint(fitted_ckpt, nc=5)
    assert "model.model.24.m.0.weight" in str(info.value) and "nc=" in str(info.value)


def test_resume_from_another_architecture_is_an_error_listing_the_keys(
    fitted_ckpt: Path, tiny_dataset: Path, tmp_path: Path, label_cache, capsys
) -> None:
    bad, _ = write_bad_checkpoint("mismatched", tmp_path, fitted_ckpt)
    err = _cli_error(fit_args(tiny_dataset, tmp_path / "runs", 2, f"--ckpt_path={bad}"), capsys)
    assert str(bad) in err and "model.model.1.conv.weight" in err and "mismatched keys" in err


def test_initial_weights_of_another_architecture_report_what_was_transferred(
    fitted_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad, _ = write_bad_checkpoint("mismatched", tmp_path, fitted_ckpt)
    hp = torch.load(fitted_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    with caplog.at_level("INFO", logger="lightning_yolo"):
        YOLOModule(cfg="yolov5n.yaml", weights=str(bad), nc=hp["nc"], imgsz=64)
    assert "transferred" in caplog.text.lower()


def test_written_checkpoints_load_weights_only_without_an_allow_list(fitted_ckpt: Path) -> None:
    for path in fitted_ckpt.parent.glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint["state_dict"] and checkpoint["optimizer_states"]
    assert not list(fitted_ckpt.parent.glob(".tmp-*"))
    model = YOLOModule.load_from_checkpoint(fitted_ckpt)
    assert model.nonfinite_steps == 0
