"""Fixtures for the reliability tests: one tiny fitted run shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest
from fit_helpers import fit_args


@pytest.fixture(scope="session")
def fitted_ckpt(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a one-epoch fit on the tiny dataset (read-only for the tests)."""
    from lightning_yolo.cli import main

    project = tmp_path_factory.mktemp("fitted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIGHTNING_YOLO_CACHE", str(project / "cache"))
        main(fit_args(tiny_dataset, project, 1))
    return project / "tiny" / "weights" / "last.ckpt"
