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


def _mosaic_canvas(tiles: list, center: tuple[int, int], img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference mosaic canvas, pixel by pixel, and its labels, written from the layout rule alone.

    A canvas pixel belongs to the tile of its quadrant around the centre; upper tiles end at the centre row, lower
    ones start there (columns likewise). Labels move with their tile, are clipped to the ``2s`` canvas, and boxes
    left without width or height are dropped.
    """
    xc, yc, size = center[0], center[1], 2 * img_size
    canvas = np.full((size, size, 3), 114, np.uint8)
    for y in range(size):
        for x in range(size):
            img = tiles[(2 if y >= yc else 0) + (1 if x >= xc else 0)][0]
            h, w = img.shape[:2]
            ty = y - (yc - h) if y < yc else y - yc
            tx = x - (xc - w) if x < xc else x - xc
            if 0 <= ty < h and 0 <= tx < w:
                canvas[y, x] = img[ty, tx]
    rows = []
    for i, (img, labels) in enumerate(tiles):
        h, w = img.shape[:2]
        dx, dy = (xc - w if i in (0, 2) else xc), (yc - h if i in (0, 1) else yc)
        for c, x1, y1, x2, y2 in np.asarray(labels, np.float64):
            box = np.clip([x1 + dx, y1 + dy, x2 + dx, y2 + dy], 0, size)
            if box[2] > box[0] and box[3] > box[1]:
                rows.append([c, *box])
    return canvas, np.array(rows).reshape(-1, 5)


@pytest.fixture
def mosaic_canvas():
    """``mosaic_canvas(tiles, center, img_size) -> (canvas, labels)``: a reference ``2s`` mosaic canvas of 4 tiles."""
    return _mosaic_canvas
