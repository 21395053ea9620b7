"""The serve command line: the missing extra, bad settings and bad weights are one line and exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lightning_yolo import cli
from lightning_yolo.serve.run import INSTALL_HINT, main


def test_without_litserve_it_prints_the_pip_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "litserve", None)  # `import litserve` now raises ImportError
    with pytest.raises(SystemExit) as done:
        cli.main(["serve", "--weights", str(tmp_path / "any.pt")])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == INSTALL_HINT == "error: serve needs LitServe: pip install -e '.[serve]'"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--imgsz", "0"], "--imgsz"),
        (["--conf", "1.5"], "--conf"),
        (["--max-batch-size", "0"], "--max-batch-size"),
        (["--max-image-mb", "0"], "--max-image-mb"),
        (["--port", "80"], "--port"),
        (["--threads", "-1"], "--threads"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("litserve")
    assert main(["--weights", str(tmp_path / "any.pt"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_bad_weights_fail_before_the_server_starts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("litserve")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    assert main(["--weights", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "garbage.pt" in err
