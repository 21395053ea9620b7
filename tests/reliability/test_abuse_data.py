"""Hostile dataset files: label files that are FIFOs, sockets, devices or 3 GB sparse files, YAML bombs and odd
``names`` in a dataset yaml, a list file that is not a list of images, and ``cache: ram`` under memory limits.

Each case is one message naming the file and the reason; what can be skipped is skipped and counted; nothing hangs.
Steps that would hang or exhaust memory when the code regresses run in a subprocess with a timeout (and, where it
is cheap, an address-space limit), so a regression fails the test instead of stalling CI.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fit_helpers import fit_args

from lightning_yolo.cli import main
from lightning_yolo.data import image_cache
from lightning_yolo.data.config import DatasetError, list_images, load_dataset_config
from lightning_yolo.data.synthetic import generate_synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120  # generous: a pass takes a few seconds; only a hang (a regression) gets near it


def _dataset(folder: Path) -> Path:
    """A fresh 8-train / 4-val synthetic dataset of this test's own (it is modified); returns its yaml."""
    return generate_synthetic_dataset(folder, sizes={"train": 8, "val": 4}, seed=1)


def _python(
    code: str, *args: str, timeout: float = TIMEOUT_S, cache: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with a timeout; a hang becomes a failed test, not a stalled run."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if cache is not None:
        env["LIGHTNING_YOLO_CACHE"] = str(cache)
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s: a hang")


# Caps the child's address space 1 GiB above what its imports use: reading /dev/zero or a 3 GB file whole then
# fails with MemoryError (a traceback, so the test fails) instead of swapping the CI machine to death.
_LIMIT_MEMORY = """
import resource
def _vm_size():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
_limit = _vm_size() + (1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (_limit if _hard == resource.RLIM_INFINITY else min(_limit, _hard), _hard))
"""

_SCAN_TRAIN = (
    """
import json, sys
from lightning_yolo.data.config import list_images, load_dataset_config
from lightning_yolo.data.scan import scan_split
"""
    + _LIMIT_MEMORY
    + """
config = load_dataset_config(sys.argv[1])
files = list_images(config.splits["train"], config.root)
result = scan_split(files, config.names, split="train", workers=0, cache_dir=sys.argv[2], progress=False)
print(json.dumps({"images": result.summary.images, "corrupt": result.summary.corrupt, "usable": len(result),
                  "messages": result.messages}))
"""
)


# ------------------------------------------------------------------------------------------------ label files
def _plant_fifo(label: Path) -> None:
    os.mkfifo(label)


def _plant_socket(label: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(label.parent)  # a relative name: AF_UNIX paths are limited to 107 bytes, pytest's tmp paths are long
    try:
        sock.bind(label.name)
    finally:
        os.chdir(cwd)
    return sock


def _plant_sparse(label: Path) -> None:
    with label.open("wb") as f:
        f.truncate(3 << 30)  # sparse: no disk used, but 3 GB if read


LABEL_CASES = {
    "fifo": (_plant_fifo, "not a regular file: a FIFO"),
    "socket": (_plant_socket, "not a regular file: a socket"),
    "symlink-to-dev-zero": (lambda label: label.symlink_to("/dev/zero"), "not a regular file: a character device"),
    "symlink-to-dev-urandom": (lambda label: label.symlink_to("/dev/urandom"), "not a regular file: a character"),
    "directory": (lambda label: label.mkdir(), "not a regular file: a directory"),
    "sparse-3GB": (_plant_sparse, "label file too large (3,221,225,472 bytes"),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_hostile_label_file_is_skipped_and_counted_without_reading_it(case: str, tmp_path: Path) -> None:
    """A label file that is a FIFO (the scan used to block in open() forever), a socket, a device (read forever),
    a directory or a 3 GB sparse file (read whole) costs its image and one message naming it, nothing more."""
    data = _dataset(tmp_path / "ds")
    label = data.parent / "labels" / "train" / "000005.txt"
    label.unlink()
    plant, reason = LABEL_CASES[case]
    held = plant(label)
    try:
        proc = _python(_SCAN_TRAIN, str(data), str(tmp_path / "cache"))
    finally:
        if held is not None:
            held.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["images"], result["corrupt"], result["usable"]) == (8, 1, 7)
    hits = [m for m in result["messages"] if str(label) in m]
    assert len(hits) == 1 and reason in hits[0] and "(image skipped)" in hits[0], result["messages"]


# ------------------------------------------------------------------------------------------------ dataset yaml
def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``names: *i`` where each level lists the previous one ``width`` times: width**levels leaves."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:], strict=False)]
    return "\n".join([*lines, f"names: *{names[-1]}", "path: .", "train: images/train", "val: images/val"]) + "\n"


def test_alias_bomb_dataset_yaml_is_refused_quickly_naming_it(tmp_path: Path) -> None:
    """The dataset yaml goes through ``settings.load_yaml``: 9 levels of 9 aliases are refused, not expanded."""
    bomb = _dataset(tmp_path / "ds").parent / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    code = (
        """
import sys
from lightning_yolo.data.config import DatasetError, load_dataset_config
from lightning_yolo.errors import ConfigError
"""
        + _LIMIT_MEMORY
        + """
try:
    load_dataset_config(sys.argv[1])
except (DatasetError, ConfigError) as err:
    print(f"REFUSED {err}")
"""
    )
    proc = _python(code, str(bomb), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = proc.stdout.strip()
    assert message.startswith(f"REFUSED {bomb}:") and "expands to more than" in message
    assert len(message.splitlines()) == 1


def test_alias_bomb_dataset_yaml_ends_fit_with_exit_2_and_one_line(tmp_path: Path) -> None:
    """Named inside a ``--config`` file (so the CLI's own check of YAML arguments never sees it), the bomb still
    ends ``fit`` with exit status 2 and one line on stderr, before any model is built."""
    bomb = _dataset(tmp_path / "ds").parent / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  data: {bomb}\n")
    args = [a for a in fit_args(bomb, tmp_path / "runs", 1) if not a.startswith("--data.data=")]
    args[1:1] = ["--config", str(config)]
    code = "import sys\nfrom lightning_yolo.cli import main\nmain(sys.argv[1:])\n"
    proc = _python(code, *args, cache=tmp_path / "cache")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-3000:]
    assert str(bomb) in errors[0] and "expands to more than" in errors[0]
    assert not (tmp_path / "runs" / "tiny").exists()


BAD_NAMES = {
    "list": ("[a, b, c, [x, y]]", "names[3]: must be a string, got a list"),
    "mapping": ("[a, {x: 1}]", "names[1]: must be a string, got a mapping"),
    "null": ("[a, null, c]", "names[1]: must be a string, got null"),
    "int": ("[1, 2]", "names[0]: must be a string, got a number (1)"),
    "float": ("[a, 2.5]", "names[1]: must be a string, got a number (2.5)"),
    "bool": ("[a, yes]", "names[1]: must be a string, got a boolean (True)"),
    "dict-value": ("{0: a, 1: [x, y]}", "names[1]: must be a string, got a list"),
    "dict-int-value": ("{0: a, 1: 7}", "names[1]: must be a string, got a number (7)"),
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_names_that_are_not_strings_are_refused_naming_the_entry(case: str, tmp_path: Path) -> None:
    """``names: [1, 2]`` used to become ``['1', '2']`` and a nested list its repr; both hide a broken yaml."""
    data = _dataset(tmp_path / "ds")
    text, expected = BAD_NAMES[case]
    bad = data.parent / "bad.yaml"
    bad.write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {text}\n")
    with pytest.raises(DatasetError) as err:
        load_dataset_config(bad)
    message = str(err.value)
    assert message.startswith(str(bad)) and expected in message and len(message.splitlines()) == 1


@pytest.mark.parametrize("names", ["{0: person, 1: bicycle}", "[person, bicycle]", "['0', '1']"])
def test_names_as_strings_stay_valid(names: str, tmp_path: Path) -> None:
    data = _dataset(tmp_path / "ds")
    good = data.parent / "good.yaml"
    good.write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    assert load_dataset_config(good).nc == 2


# ------------------------------------------------------------------------------------------------ list files
SECRETS = [f"user{i}:x:{1000 + i}:{1000 + i}:SECRET-{i}:/home/user{i}:/bin/sh" for i in range(12)]


def _outside_list(tmp_path: Path) -> tuple[Path, Path]:
    """A dataset whose ``train`` is a file outside it that is not a list of images (like /etc/passwd)."""
    data = _dataset(tmp_path / "ds")
    outside = tmp_path / "etc" / "passwd"
    outside.parent.mkdir()
    outside.write_text("\n".join(SECRETS) + "\n")
    bad = data.parent / "passwd.yaml"
    bad.write_text("path: .\ntrain: ../etc/passwd\nval: images/val\nnames: {0: a, 1: b, 2: c}\n")
    return bad, outside


def test_a_file_that_is_not_a_list_of_images_is_refused_without_quoting_it(tmp_path: Path) -> None:
    bad, outside = _outside_list(tmp_path)
    config = load_dataset_config(bad)
    with pytest.raises(DatasetError) as err:
        list_images(config.splits["train"], config.root)
    message = str(err.value)
    assert str(outside) in message and "not a list of images" in message and len(message.splitlines()) == 1
    assert not any(part in message for line in SECRETS for part in line.split(":") if len(part) > 2)


def test_fit_on_a_non_list_file_prints_one_line_and_none_of_it(tmp_path: Path, label_cache: Path, capsys) -> None:
    bad, outside = _outside_list(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(bad, tmp_path / "runs", 1))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(outside) in err and "SECRET" not in err and "user1" not in err


# ------------------------------------------------------------------------------------------------ cache: ram
@pytest.fixture
def scans(tmp_path: Path, label_cache: Path):
    """The data module's scans of a fresh tiny dataset, and a data module factory for it."""
    from lightning_yolo.data import YOLODataModule

    data = _dataset(tmp_path / "ds")

    def make(**kwargs) -> YOLODataModule:
        return YOLODataModule(data=str(data), imgsz=64, batch_size=2, workers=0, **kwargs)

    return make


def _need(dm, split: str) -> float:
    return image_cache.resized_bytes(dm.scan(split).shapes, dm.imgsz) * (1 + image_cache.RAM_SAFETY_MARGIN)


def test_ram_cache_respects_the_address_space_limit(scans, monkeypatch, caplog) -> None:
    """``ulimit -v`` leaves little room although MemAvailable is large: fall back, saying why with numbers."""
    import resource

    real = resource.getrlimit
    headroom = 4096  # bytes above the current virtual size

    def fake(which: int) -> tuple[int, int]:
        if which == resource.RLIMIT_AS:
            with open("/proc/self/status") as f:
                vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            return vm + headroom, resource.RLIM_INFINITY
        return real(which)

    monkeypatch.setattr(image_cache, "available_memory_bytes", lambda: 1 << 50)
    monkeypatch.setattr(resource, "getrlimit", fake)
    caplog.set_level(logging.INFO)
    dm = scans(cache="ram")
    dm.setup("fit")
    assert dm.datasets["train"]._ram is None and dm.datasets["val"]._ram is None
    assert "caching" not in caplog.text
    warning = next(r.getMessage() for r in caplog.records if "cache='ram' needs" in r.getMessage())
    assert "address-space limit" in warning and "GB" in warning and "read from disk instead" in warning
    assert dm.datasets["train"][0][0].shape[0] == 3


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_ram_cache_respects_the_cgroup_memory_limit(version: str, scans, tmp_path: Path, monkeypatch, caplog) -> None:
    """A container's cgroup limit (v2 memory.max - memory.current, v1 limit_in_bytes - usage_in_bytes) counts."""
    fake = tmp_path / "cgroup"
    group = fake / ("job" if version == "v2" else "memory/job")
    group.mkdir(parents=True)
    proc_cgroup = tmp_path / "proc_self_cgroup"
    if version == "v2":
        (group / "memory.max").write_text("1000000000\n")
        (group / "memory.current").write_text("999990000\n")
        (group / "memory.stat").write_text("anon 1\ninactive_file 4096\n")
        proc_cgroup.write_text("0::/job\n")
    else:
        (group / "memory.limit_in_bytes").write_text("1000000000\n")
        (group / "memory.usage_in_bytes").write_text("999990000\n")
        (group / "memory.stat").write_text("total_inactive_file 4096\n")
        proc_cgroup.write_text("4:memory:/job\n0::/\n")
    monkeypatch.setattr(image_cache, "available_memory_bytes", lambda: 1 << 50)
    monkeypatch.setattr(image_cache, "CGROUP_ROOT", fake, raising=False)
    monkeypatch.setattr(image_cache, "PROC_SELF_CGROUP", proc_cgroup, raising=False)
    caplog.set_level(logging.INFO)
    dm = scans(cache="ram")
    dm.setup("fit")
    assert dm.datasets["train"]._ram is None and dm.datasets["val"]._ram is None
    warning = next(r.getMessage() for r in caplog.records if "cache='ram' needs" in r.getMessage())
    assert "cgroup memory limit" in warning and "0.00 GB" in warning


def test_ram_cache_budget_covers_train_and_val_together(scans, monkeypatch, caplog) -> None:
    """Each split fits alone but not both: one budget over the splits, so neither is cached."""
    probe = scans()
    train, val = _need(probe, "train"), _need(probe, "val")
    monkeypatch.setattr(image_cache, "available_memory_bytes", lambda: int(max(train, val) + min(train, val) / 2))
    caplog.set_level(logging.INFO)
    dm = scans(cache="ram")
    dm.setup("fit")
    assert dm.datasets["train"]._ram is None and dm.datasets["val"]._ram is None
    assert "train+val" in caplog.text and "read from disk instead" in caplog.text


def test_ram_cache_that_fits_is_still_used(scans, caplog) -> None:
    caplog.set_level(logging.INFO)
    dm = scans(cache="ram")
    dm.setup("fit")
    assert dm.datasets["train"]._ram is not None and dm.datasets["val"]._ram is not None
    assert all(isinstance(img, np.ndarray) for img in dm.datasets["train"]._ram)


def test_ram_budget_reads_the_real_address_space_limit() -> None:
    """Without monkeypatching: a child under a real ``RLIMIT_AS`` sees at most the limit minus its VmSize."""
    code = (
        """
import json, resource
from lightning_yolo.data import image_cache
"""
        + _LIMIT_MEMORY
        + """
print(json.dumps([[b.free, b.source] for b in image_cache.memory_budgets()]))
"""
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    budgets = json.loads(proc.stdout.strip().splitlines()[-1])
    address = [free for free, source in budgets if "address-space" in source]
    assert len(address) == 1 and 0 < address[0] <= 1 << 30
