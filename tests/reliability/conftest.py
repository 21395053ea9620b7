"""Fixtures for the reliability tests: one tiny fitted run shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest
from fit_helpers import run_tiny_fit


@pytest.fixture(scope="session")
def fitted_ckpt(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a one-epoch fit on the tiny dataset (read-only for the tests)."""
    return run_tiny_fit(tiny_dataset, tmp_path_factory.mktemp("fitted"), 1) / "weights" / "last.ckpt"
