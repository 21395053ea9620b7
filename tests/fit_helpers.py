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


def coco128_subset(coco128: Path, root: Path, images: int) -> Path:
    """The first ``images`` coco128 images and labels linked into a new dataset folder (split ``images`` for both
    train and val); returns its data yaml."""
    for kind in ("images", "labels"):
        (root / kind).mkdir(parents=True)
    for image in sorted((coco128 / "images" / "train2017").glob("*.jpg"))[:images]:
        (root / "images" / image.name).symlink_to(image)
        label = coco128 / "labels" / "train2017" / f"{image.stem}.txt"
        if label.is_file():
            (root / "labels" / label.name).symlink_to(label)
    names = (coco128 / "coco128.yaml").read_text().split("names:", 1)[1]
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images\nval: images\nnames:{names}")
    return root / "data.yaml"
