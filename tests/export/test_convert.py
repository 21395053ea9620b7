"""The ``convert`` command: official YOLOv5 .pt or training .ckpt in, lightning_yolo weights file out."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
import torch

from lightning_yolo.export.convert import main
from lightning_yolo.models.weights import FORMAT, WeightsError, load_weights


@pytest.fixture(scope="module")
def yolov5n_path(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


def test_convert_writes_a_weights_only_file_and_prints_a_summary(
    yolov5n_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "yolov5n_lightning.pt"
    assert main(["--weights", str(yolov5n_path), "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "1,872,157" in out and "80 names" in out and "[8, 16, 32]" in out
    raw = torch.load(output, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and len(raw["names"]) == 80 and raw["stride"] == [8.0, 16.0, 32.0]
    assert raw["state_dict"]["model.0.conv.weight"].dtype == torch.float32


def test_converted_file_matches_the_official_one(yolov5n_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.pt"
    assert main(["--weights", str(yolov5n_path), "--output", str(output)]) == 0
    official, converted = load_weights(yolov5n_path), load_weights(output)
    assert converted.yaml == official.yaml and converted.names == official.names
    assert converted.state_dict.keys() == official.state_dict.keys()
    assert all(torch.equal(converted.state_dict[k], v) for k, v in official.state_dict.items())


def test_output_defaults_to_the_input_name_with_a_suffix(yolov5n_path: Path, tmp_path: Path) -> None:
    weights = tmp_path / "yolov5n.pt"
    weights.write_bytes(yolov5n_path.read_bytes())
    assert main(["--weights", str(weights)]) == 0
    assert (tmp_path / "yolov5n_lightning.pt").is_file()


def test_bad_input_fails_with_a_message_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    output = tmp_path / "out.pt"
    assert main(["--weights", str(bad), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot load {bad}: ") and err.count("\n") == 1
    assert not output.exists()


def test_refuses_to_overwrite_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    assert main(["--weights", str(weights), "--output", str(weights)]) == 2
    assert capsys.readouterr().err == f"error: --output {weights} would overwrite the input file\n"
    assert weights.read_bytes() == b"x"


def test_a_training_checkpoint_converts_to_its_ema_weights(yolov5n_path: Path, tmp_path: Path) -> None:
    official = load_weights(yolov5n_path)
    ckpt = tmp_path / "last.ckpt"
    state = {f"ema.module.{k}": v for k, v in official.state_dict.items()}
    state |= {f"model.{k}": torch.zeros_like(v) for k, v in official.state_dict.items()}
    torch.save({"state_dict": state, "hyper_parameters": {"cfg": official.yaml, "names": official.names}}, ckpt)
    assert main(["--weights", str(ckpt)]) == 0
    converted = load_weights(tmp_path / "last_lightning.pt")
    assert converted.names == official.names and converted.stride == official.stride
    assert all(torch.equal(converted.state_dict[k], v) for k, v in official.state_dict.items())


def test_output_into_missing_folders_creates_them(yolov5n_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "new" / "deeper" / "w.pt"
    assert main(["--weights", str(yolov5n_path), "--output", str(output)]) == 0
    assert load_weights(output).names == load_weights(yolov5n_path).names


@pytest.mark.parametrize("kind", ["parent_is_a_file", "output_is_a_folder"])
def test_output_that_cannot_be_written_is_a_one_line_error(
    yolov5n_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    output = tmp_path / "plain.txt" / "sub" / "w.pt" if kind == "parent_is_a_file" else tmp_path
    assert main(["--weights", str(yolov5n_path), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --output {output}") and err.count("\n") == 1
    expected = f"{tmp_path / 'plain.txt'} is not a folder" if kind == "parent_is_a_file" else "is a folder"
    assert expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]  # no stray temporary file


def _unblock_after(fifo: Path, seconds: float) -> None:
    """Open ``fifo`` for writing after ``seconds``, so code that wrongly opened it for reading fails, not hangs."""

    def poke() -> None:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader waiting: nothing was blocked
            pass

    timer = threading.Timer(seconds, poke)
    timer.daemon = True
    timer.start()


@pytest.mark.parametrize(
    ("kind", "what"), [("folder", "a folder"), ("fifo", "a FIFO"), ("device", "a character device")]
)
def test_weights_that_are_not_a_regular_file_say_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, what: str
) -> None:
    if kind == "folder":
        weights = tmp_path / "weights.pt"
        weights.mkdir()
    elif kind == "fifo":
        weights = tmp_path / "pipe.pt"
        os.mkfifo(weights)  # opening it would block until a writer comes: the check must only stat it
        _unblock_after(weights, seconds=10.0)
    else:
        weights = Path("/dev/null")
    with pytest.raises(WeightsError, match=re.escape(f"cannot load {weights}: {what}")):
        load_weights(weights)
    assert main(["--weights", str(weights), "--output", str(tmp_path / "out.pt")]) == 2
    assert capsys.readouterr().err == f"error: cannot load {weights}: {what}\n"
    assert not (tmp_path / "out.pt").exists()
