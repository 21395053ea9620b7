"""The tiny ``fit`` command line shared by the end-to-end tests (tests/ is on sys.path through its conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest


def fit_args(data: Path, project: Path, epochs: int, *extra: str) -> list[str]:
    """The smallest useful ``fit`` command line (yolov5n, 64 px, batch 4, no workers, no progress bar)."""
    return [
        "fit",
        "--model.cfg=yolov5n.yaml",
        f"--data.data={data}",
        "--data.imgsz=64",
        "--data.batch_size=4",
        "--data.workers=0",
        f"--trainer.max_epochs={epochs}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--project={project}",
        "--name=tiny",
        *extra,
    ]


def run_tiny_fit(data: Path, project: Path, epochs: int) -> Path:
    """Run the tiny fit into ``project`` (its label cache kept there too); returns the run folder."""
    from lightning_yolo.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIGHTNING_YOLO_CACHE", str(project / "cache"))
        main(fit_args(data, project, epochs))
    return project / "tiny"
