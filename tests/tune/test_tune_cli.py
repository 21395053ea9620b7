"""``tune`` on the command line: the missing extra, bad settings (one line, exit 2, before Ray starts)."""

from __future__ import annotations

import sys

import pytest

from lightning_yolo.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main(["tune", *args])
    return stop.value.code, capsys.readouterr().err


def test_without_the_extra_tune_names_the_pip_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    code, err = _run(["--tune.trials", "2"], capsys)
    assert code == 2
    assert err == "error: tune needs Ray Tune and Optuna: pip install -e '.[tune]'\n"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--tune.trials", "0"], "tune.trials"),
        (["--tune.searcher", "grid"], "--tune.searcher"),
        (["--tune.keys", "lr0,iou_t"], "iou_t"),
        (["--tune.bogus", "1"], "--tune.bogus"),
        (["--model.lr0", "-0.1"], "model.lr0"),
        (["--data.hsv_h", "abc"], "data.hsv_h"),
        (["--model.weights", "missing.pt"], "model.weights"),
        (["--model.weights", __file__], "not a PyTorch checkpoint"),
    ],
)
def test_bad_settings_are_one_line_before_ray_starts(args, named, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    pytest.importorskip("optuna")
    code, err = _run(["--data.data=synthetic", f"--tune.project={tmp_path}", *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err
    assert not ray.is_initialized()
    assert not (tmp_path / "exp").exists()
