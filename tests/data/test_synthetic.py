"""The built-in synthetic dataset: deterministic, exact boxes, written atomically into the cache folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_yolo.data import YOLODataModule
from lightning_yolo.data.config import load_dataset_config
from lightning_yolo.data.synthetic import (
    FOLDER,
    NAMES,
    SHAPE_DRAWERS,
    SPLIT_SIZES,
    ensure_synthetic_dataset,
    generate_synthetic_dataset,
    random_box,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tmp_path: Path) -> None:
    sizes = {"train": 6, "val": 3}
    first = _files(generate_synthetic_dataset(tmp_path / "a", sizes, seed=7).parent)
    second = _files(generate_synthetic_dataset(tmp_path / "b", sizes, seed=7).parent)
    assert first == second and len(first) == 2 * 9 + 1
    other = _files(generate_synthetic_dataset(tmp_path / "c", sizes, seed=8).parent)
    assert other != first


@pytest.mark.parametrize("cls", range(len(NAMES)))
def test_every_shape_fills_its_box_exactly(cls: int) -> None:
    rng = np.random.default_rng(cls)
    for _ in range(50):
        box = random_box(200, 150, rng)
        canvas = np.zeros((150, 200, 3), np.uint8)
        SHAPE_DRAWERS[cls](canvas, box, (255, 255, 255))
        ys, xs = np.nonzero(canvas[..., 0])
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == box  # pixel-edge box of the drawn pixels


def test_default_dataset_goes_to_the_cache_folder_once(cache_folder: Path) -> None:
    yaml_path = ensure_synthetic_dataset()
    assert yaml_path == cache_folder / FOLDER / "synthetic.yaml"
    stamp = yaml_path.stat().st_mtime_ns
    assert ensure_synthetic_dataset() == yaml_path and yaml_path.stat().st_mtime_ns == stamp
    assert [p.name for p in cache_folder.iterdir()] == [FOLDER]  # no temporary folder left behind
    config = load_dataset_config(yaml_path)
    assert config.names == list(NAMES)
    for split, count in SPLIT_SIZES.items():
        assert len(list((yaml_path.parent / "images" / split).glob("*.jpg"))) == count


def test_default_dataset_is_varied_and_scans_clean(cache_folder: Path) -> None:
    dm = YOLODataModule(imgsz=256, batch_size=8, workers=0)  # data defaults to "synthetic"
    assert dm.data_yaml.is_relative_to(cache_folder) and dm.nc == 4
    dm.prepare_data()
    train = dm.scans["train"]
    assert train.summary.images == 256 and train.summary.corrupt == 0 and not train.messages
    assert 0 < train.summary.backgrounds < 64
    classes = np.concatenate(train.labels)[:, 0]
    assert set(classes.tolist()) == {0.0, 1.0, 2.0, 3.0}
    aspects = {round(h / w, 2) for h, w in train.shapes.tolist()}
    assert len(aspects) >= 4 and train.shapes.max() == 256
    sides = np.concatenate(train.labels)[:, 3:] * 256
    assert sides.min() < 20 and sides.max() > 90


def test_cache_location_is_read_when_called(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIGHTNING_YOLO_CACHE", str(tmp_path / "elsewhere"))
    assert ensure_synthetic_dataset().is_relative_to(tmp_path / "elsewhere")
    assert ensure_synthetic_dataset(tmp_path / "explicit").is_relative_to(tmp_path / "explicit")
