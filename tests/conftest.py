"""Shared fixtures. Tests that need `../shared` use the `shared` fixture and skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# LIGHTNING_YOLO_SHARED_DIR points elsewhere (e.g. a missing folder, to check that those tests skip cleanly).
SHARED = Path(os.environ.get("LIGHTNING_YOLO_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only reference folder beside the project; skips the test when it is absent."""
    if not (SHARED / "README.md").is_file():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (8 train, 4 val images) in YOLO layout; returns its data yaml."""
    from lightning_yolo.data.synthetic import generate_synthetic_dataset

    return generate_synthetic_dataset(tmp_path_factory.mktemp("tiny"), sizes={"train": 8, "val": 4}, seed=1)


@pytest.fixture
def label_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the project's cache folder inside the test's temporary folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIGHTNING_YOLO_CACHE", str(cache))
    return cache
