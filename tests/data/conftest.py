"""Fixtures for the data tests: a private cache folder, tiny seeded datasets and folder fingerprints."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lightning_yolo.data.synthetic import generate_synthetic_dataset


@pytest.fixture(autouse=True)
def cache_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the project's cache folder at a fresh temporary folder for every test."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LIGHTNING_YOLO_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    """A seeded 12-train / 5-val dataset of small images (synthetic shapes) with its yaml."""
    return generate_synthetic_dataset(tmp_path / "tiny", sizes={"train": 12, "val": 5}, seed=3)


def _folder_fingerprint(root: Path) -> str:
    """Hash of every file's relative path, bytes, size and mtime_ns, and every folder's listing and mtime_ns."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        st = os.stat(folder)
        digest.update(f"D {os.path.relpath(folder, root)} {st.st_mtime_ns} {sorted(files)}\n".encode())
        for name in sorted(files):
            path = Path(folder) / name
            st = path.stat()
            digest.update(f"F {path.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _write_image(path: Path, h: int, w: int, seed: int = 0, ext: str = ".jpg") -> np.ndarray:
    """Write a random BGR image (``ext`` chooses the format); returns the pixels written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ok, data = cv2.imencode(ext, img)
    assert ok
    path.write_bytes(data.tobytes())
    return img


def _write_yaml(path: Path, text: str) -> Path:
    """Write a yaml file (creating its folder); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder_fingerprint():
    """``folder_fingerprint(root) -> str``: hash of a folder's files (bytes, sizes, mtimes) and listings."""
    return _folder_fingerprint


@pytest.fixture
def write_image():
    """``write_image(path, h, w, seed=0, ext=".jpg") -> pixels``: write a random image."""
    return _write_image


@pytest.fixture
def write_yaml():
    """``write_yaml(path, text) -> path``: write a yaml file."""
    return _write_yaml
