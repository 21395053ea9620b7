"""Dataset yaml parsing and validation (RELIABILITY "Bad dataset yaml"), image listing and label pairing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from lightning_yolo.data.config import (
    DatasetError,
    image_to_label_path,
    list_images,
    load_dataset_config,
)

NAMES = "names:\n  0: cat\n  1: dog\n"


@pytest.fixture
def layout(tmp_path: Path, write_image) -> Path:
    """``tmp/ds/images/{train,val}`` with two images each."""
    for split in ("train", "val"):
        for i in range(2):
            write_image(tmp_path / "ds" / "images" / split / f"{i}.jpg", 16, 16, seed=i)
    return tmp_path / "ds"


def test_relative_path_resolves_against_the_yaml_folder(layout: Path, tmp_path: Path, monkeypatch, write_yaml) -> None:
    yaml_path = write_yaml(tmp_path / "cfg" / "d.yaml", f"path: ../ds\ntrain: images/train\nval: images/val\n{NAMES}")
    monkeypatch.chdir(tmp_path / "ds" / "images")  # somewhere unrelated: must not matter
    config = load_dataset_config(yaml_path)
    assert config.root == layout.resolve()
    assert config.splits["train"] == [layout.resolve() / "images" / "train"]
    assert config.names == ["cat", "dog"] and config.nc == 2
    assert "test" not in config.splits


def test_absent_path_means_the_yaml_folder(layout: Path, write_yaml) -> None:
    config = load_dataset_config(write_yaml(layout / "d.yaml", f"train: images/train\nval: images/val\n{NAMES}"))
    assert config.root == layout.resolve()


def test_names_as_list_and_matching_nc(layout: Path, write_yaml) -> None:
    text = "train: images/train\nval: [images/val, images/train]\nnc: 3\nnames: [a, b, c]\n"
    config = load_dataset_config(write_yaml(layout / "d.yaml", text))
    assert config.names == ["a", "b", "c"]
    assert len(config.splits["val"]) == 2


BAD_YAMLS = {
    "missing train": ("val: images/val\n" + NAMES, "'train'"),
    "missing val": ("train: images/train\n" + NAMES, "'val'"),
    "missing names": ("train: images/train\nval: images/val\n", "'names'"),
    "nc differs": ("train: images/train\nval: images/val\nnc: 3\n" + NAMES, "'nc'"),
    "nc not an int": ("train: images/train\nval: images/val\nnc: two\n" + NAMES, "'nc'"),
    "non-integer name keys": ("train: images/train\nval: images/val\nnames:\n  a: cat\n  b: dog\n", "'names'"),
    "name keys with a gap": ("train: images/train\nval: images/val\nnames:\n  0: cat\n  2: dog\n", "'names'"),
    "train path missing": ("train: images/nothere\nval: images/val\n" + NAMES, "images/nothere"),
    "python tag": ("train: !!python/object/apply:os.system ['echo hi']\nval: images/val\n" + NAMES, "python"),
    "not a mapping": ("- a\n- b\n", "mapping"),
    "broken yaml": ("train: [images/train\nval: images/val\n", "not a valid dataset yaml"),
}


@pytest.mark.parametrize("case", sorted(BAD_YAMLS))
def test_bad_yaml_is_an_error_naming_the_yaml_and_key(case: str, layout: Path, write_yaml) -> None:
    text, expected = BAD_YAMLS[case]
    yaml_path = write_yaml(layout / "bad.yaml", text)
    with pytest.raises(DatasetError) as err:
        load_dataset_config(yaml_path)
    assert str(yaml_path) in str(err.value)
    assert expected in str(err.value)


def test_missing_yaml_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.yaml"):
        load_dataset_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "download",
    [
        "bash -c 'touch {marker}'",
        "import pathlib; pathlib.Path('{marker}').touch()",
        "https://example.invalid/data.zip",
    ],
)
def test_download_is_never_run(download: str, layout: Path, tmp_path: Path, caplog, write_yaml) -> None:
    marker = tmp_path / "executed"
    text = f'train: images/train\nval: images/val\n{NAMES}download: "{download.format(marker=marker)}"\n'
    caplog.set_level(logging.INFO)
    load_dataset_config(write_yaml(layout / "d.yaml", text))
    assert not marker.exists()
    assert "download" in caplog.text and "ignored" in caplog.text


def test_download_is_not_run_when_the_data_is_missing(tmp_path: Path, write_yaml) -> None:
    marker = tmp_path / "executed"
    text = f"train: images/train\nval: images/val\n{NAMES}download: |\n  open('{marker}', 'w').write('x')\n"
    with pytest.raises(DatasetError, match="path not found"):
        load_dataset_config(write_yaml(tmp_path / "empty" / "d.yaml", text))
    assert not marker.exists()


def test_empty_folder_is_an_error_naming_it(layout: Path) -> None:
    empty = layout / "images" / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=str(empty)):
        list_images([empty])


def test_list_file_lines_resolve_like_yolov5(layout: Path) -> None:
    listing = layout / "train.txt"
    absolute = layout / "images" / "val" / "0.jpg"
    listing.write_text(f"./images/train/0.jpg\r\nimages/train/1.jpg\n\n{absolute}\n", encoding="utf-8")
    files = list_images([listing], layout)
    expected = ["images/train/0.jpg", "images/train/1.jpg", "images/val/0.jpg"]
    assert [str(f.relative_to(layout)) for f in files] == expected


def test_list_file_bad_lines_are_named_by_line(layout: Path) -> None:
    listing = layout / "train.txt"
    listing.write_text("./images/train/0.jpg\n./images/train/missing.jpg\n./notes.md\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        list_images([listing], layout)
    assert f"{listing}:2: image not found" in str(err.value)
    assert f"{listing}:3:" in str(err.value) and "not an image file" in str(err.value)


def test_folder_listing_is_recursive_sorted_and_case_insensitive(layout: Path, write_image) -> None:
    write_image(layout / "images" / "train" / "sub" / "Z.PNG", 16, 16, ext=".png")
    (layout / "images" / "train" / "readme.txt").write_text("x")
    files = list_images([layout / "images" / "train"])
    assert [f.name for f in files] == ["0.jpg", "1.jpg", "Z.PNG"]


@pytest.mark.parametrize(
    ("image", "label"),
    [
        ("/d/images/train/a.jpg", "/d/labels/train/a.txt"),
        ("/d/images/x/images/b.png", "/d/images/x/labels/b.txt"),  # the last /images/ is replaced
        ("/d/imgs/c.v2.jpeg", "/d/imgs/c.v2.txt"),  # no images folder: beside the image
    ],
)
def test_image_to_label_path_pairs_like_yolov5(image: str, label: str) -> None:
    assert image_to_label_path(image.replace("/", os.sep)) == Path(label.replace("/", os.sep))
