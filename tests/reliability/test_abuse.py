"""The second round of abuse: YAML bombs, hostile model configs, shared run names, full disks, SIGTERM, resumes
with changed settings and starts that fail. Each case is one line on stderr, a non-zero exit, and no data lost."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fit_helpers import fit_args

from lightning_yolo.checkpoints import files as checkpoint_files
from lightning_yolo.checkpoints.io import AtomicCheckpointIO
from lightning_yolo.checkpoints.runs import claim_run_dir, new_run_dir, remove_if_unused
from lightning_yolo.cli import main
from lightning_yolo.errors import CheckpointError, ConfigError
from lightning_yolo.settings import load_yaml

ROOT = Path(__file__).resolve().parents[2]


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``names: *i`` where each level lists the previous one ``width`` times: width**levels leaves."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:], strict=False)]
    return "\n".join([*lines, f"names: *{names[-1]}", "path: .", "train: images", "val: images"]) + "\n"


def _one_line_exit(capsys: pytest.CaptureFixture, argv: list[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------------------------ YAML bombs
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_alias_bomb(), "expands to more than"),
        ("a: " + "[" * 200_000 + "]" * 200_000 + "\n", "nested too deeply"),
        ("".join("  " * i + "k:\n" for i in range(500)) + "  " * 500 + "v: 1\n", "nested too deeply"),
    ],
    ids=["alias-bomb", "flow-nesting", "block-nesting"],
)
def test_yaml_bombs_are_refused_quickly(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=reason) as info:
        load_yaml(path)
    assert str(info.value).startswith(str(path))
    assert time.perf_counter() - start < 30  # a hang would be caught by the CI limit; this only reports it


def test_yaml_bomb_as_config_file_exits_with_one_line(tmp_path: Path, capsys, label_cache: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(_alias_bomb())
    err = _one_line_exit(capsys, ["fit", "--config", str(config)])
    assert str(config) in err and "expands" in err


def test_oversized_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(17 << 20)  # sparse: no disk used
    with pytest.raises(ConfigError, match="too large"):
        load_yaml(path)


# ------------------------------------------------------------------------------------------------ model configs
@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ("!!python/object/apply:os.system ['touch {canary}']\n", "not valid YAML"),
        ("MODULE", "unknown module"),
        ("width_multiple: 500\n", "width_multiple"),
    ],
    ids=["python-tag", "import-module", "huge-width"],
)
def test_hostile_model_configs_exit_with_one_line_before_building(
    edit: str, reason: str, tmp_path: Path, tiny_dataset: Path, label_cache: Path, capsys, monkeypatch
) -> None:
    from importlib.resources import files

    canary = tmp_path / "canary"
    base = (files("lightning_yolo.models") / "configs" / "yolov5n.yaml").read_text(encoding="utf-8")
    cfg = tmp_path / "model.yaml"
    if edit == "MODULE":
        cfg.write_text(base.replace("[-1, 1, SPPF, [1024, 5]]", "[-1, 1, __import__('os').system, ['touch x']]"))
    elif edit.startswith("width"):
        cfg.write_text(base.replace("width_multiple: 0.25", edit.strip()))
    else:
        cfg.write_text(edit.format(canary=canary) + base)
    monkeypatch.setattr("torch.nn.Conv2d.__init__", _never)
    err = _one_line_exit(capsys, fit_args(tiny_dataset, tmp_path, 1, f"--model.cfg={cfg}"))
    assert str(cfg) in err and reason in err
    assert not canary.exists()


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("a layer was allocated before the config was checked")


def test_huge_image_size_exits_with_one_line(tmp_path: Path, tiny_dataset: Path, label_cache: Path, capsys) -> None:
    err = _one_line_exit(capsys, fit_args(tiny_dataset, tmp_path, 1, "--data.imgsz=100000"))
    assert "data.imgsz must be in [1, 8192]" in err


# ------------------------------------------------------------------------------------------------ run folders
def _claim(args: tuple[str, str]) -> str:
    return str(claim_run_dir(args[0], args[1]))


def test_runs_started_together_never_share_a_folder(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        folders = pool.map(_claim, [(str(tmp_path), "sim")] * 12)
    assert len(set(folders)) == 12
    assert sorted(Path(f).name for f in folders) == sorted(["sim", *(f"sim{i}" for i in range(2, 13))])


def test_claim_skips_a_name_taken_between_naming_and_creating(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sim").mkdir()
    monkeypatch.setattr(
        "lightning_yolo.checkpoints.runs.new_run_dir", lambda project, name, exist_ok=False: project / name
    )
    assert claim_run_dir(tmp_path, "sim") == tmp_path / "sim2"  # sim was taken: mkdir failed, the next number


def test_a_failed_start_leaves_no_run_folder(tmp_path: Path, tiny_dataset: Path, label_cache: Path, capsys) -> None:
    missing = tmp_path / "missing.yaml"
    _one_line_exit(capsys, fit_args(missing, tmp_path, 1))
    assert not (tmp_path / "tiny").exists()


def test_remove_if_unused_keeps_a_folder_with_results(tmp_path: Path) -> None:
    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "config.yaml").write_text("a: 1\n")
    (run / "results.csv").write_text("epoch\n0\n")
    assert not remove_if_unused(run) and (run / "results.csv").is_file()
    (run / "results.csv").unlink()
    assert remove_if_unused(run) and not run.exists()


def test_new_run_dir_still_only_names(tmp_path: Path) -> None:
    assert new_run_dir(tmp_path, "exp") == tmp_path / "exp" and not (tmp_path / "exp").exists()


# ------------------------------------------------------------------------------------------------ checkpoints
def test_disk_full_is_one_line_naming_folder_and_free_space(tmp_path: Path, monkeypatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "weights" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    before = target.read_bytes()
    monkeypatch.setattr(checkpoint_files.os, "fsync", full)
    with pytest.raises(CheckpointError) as info:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, target)
    message = str(info.value)
    assert message.startswith(str(target.parent)) and "No space left" in message and "MB free" in message
    assert "\n" not in message
    assert target.read_bytes() == before  # the previous checkpoint is untouched


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_a_checkpoint_that_is_not_a_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    path = {"folder": tmp_path, "device": Path("/dev/null")}.get(kind, tmp_path / "pipe.ckpt")
    if kind == "fifo":
        os.mkfifo(path)
    expected = {"folder": "a folder", "fifo": "a FIFO", "device": "a character device"}[kind]
    with pytest.raises(CheckpointError, match=expected):
        checkpoint_files.read_checkpoint(path)


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.slow
def test_resume_with_another_image_size_warns_and_keeps_the_old_config(
    tmp_path: Path, tiny_dataset: Path, label_cache: Path, caplog
) -> None:
    main(fit_args(tiny_dataset, tmp_path, 1))
    run = tmp_path / "tiny"
    original = (run / "config.yaml").read_text()
    with caplog.at_level("WARNING", logger="lightning_yolo"):
        main(fit_args(tiny_dataset, tmp_path, 2, "--ckpt_path=last", "--data.imgsz=96"))
    assert "image size 64 -> 96" in caplog.text
    assert (run / "config.previous.yaml").read_text() == original
    assert "imgsz: 96" in (run / "config.yaml").read_text()


# ------------------------------------------------------------------------------------------------ SIGTERM
@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_exits_non_zero_says_where_and_resumes(tmp_path: Path, tiny_dataset: Path, workers: int) -> None:
    env = {**os.environ, "LIGHTNING_YOLO_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    argv = fit_args(tiny_dataset, tmp_path, 50, f"--data.workers={workers}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightning_yolo", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a job a scheduler stops
    )
    last = tmp_path / "tiny" / "weights" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.is_file(), "no epoch finished in time"
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group: the fit and its loader workers
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the fit did not stop after SIGTERM")
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM: fit interrupted in epoch" in err and "continue with --ckpt_path last" in err
    assert "Traceback" not in err, err[-3000:]
    resumed = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    main_args = fit_args(tiny_dataset, tmp_path, resumed + 2, "--ckpt_path=last")
    done = subprocess.run([sys.executable, "-m", "lightning_yolo", *main_args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == resumed + 1
