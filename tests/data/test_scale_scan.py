"""The COCO-scale label scan: bit-identical labels from the array cache, one label table, listing, progress lines.

The reference labels are computed here line by line with :func:`parse_row` and ``np.unique`` (the scan's rules
before the vectorised path and the array cache existed), on a generated set of 2,000 images whose label files mix
plain boxes written at several precisions with every kind of line that needs clipping, a polygon, a duplicate or
an error.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lightning_yolo.data import progress as progress_module
from lightning_yolo.data import scan as scan_module
from lightning_yolo.data.cache import label_cache_path
from lightning_yolo.data.config import image_to_label_file, list_image_files
from lightning_yolo.data.images import verify_image
from lightning_yolo.data.label_table import LabelTable
from lightning_yolo.data.labels import LabelError, parse_row
from lightning_yolo.data.scan import scan_split

NC = 80
NAMES = [f"c{i}" for i in range(NC)]


def _box_line(rng: np.random.Generator, fmt: str) -> str:
    w, h = rng.uniform(0.01, 0.7, 2)
    x, y = w / 2 + rng.random() * (1 - w), h / 2 + rng.random() * (1 - h)
    return f"{int(rng.integers(NC))} " + " ".join(format(v, fmt) for v in (x, y, w, h))


_SPECIAL_LINES = (
    "3 0.5 0.5 0.2 0.2",  # repeated below: a duplicate
    "-0 0.5 0.5 0.2 0.2",  # class -0: the same row by value as "0 0.5 0.5 0.2 0.2"
    "1 0.9 0.5 0.4 0.2",  # past the right border: clipped
    "2 0.0005 0.5 0.002 0.1",  # left edge 0.0005 outside: clipped
    "4 -0.0004 0.3 0.2 0.2",  # a coordinate just under 0: within tolerance, clipped
    "5 1.0004 0.5 0.1 0.1",  # just over 1: within tolerance, clipped
    "6 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4",  # a polygon
    "7 0.5 0.5 0.9999999 0.9999999",  # edges within rounding noise of the border
    "8 0.25000001 0.75 0.5 0.5",  # rounds in float32
    "9 5e-1 2.5E-1 1e-1 0.1",  # exponents
    "10 0.5 0.5 0.2 0.2 ",  # trailing blank
)


def _label_text(rng: np.random.Generator, i: int) -> str | None:
    """Label text of image ``i`` (None: no label file); every 7th file mixes in special lines."""
    if i % 100 == 0:
        return None
    if i % 100 == 1:
        return ""
    fmt = ("%.6f", ".17g", ".9g", ".4f")[i % 4].lstrip("%")
    lines = [_box_line(rng, fmt) for _ in range(int(rng.integers(1, 15)))]
    if i % 7 == 0:
        picks = rng.choice(len(_SPECIAL_LINES), size=4, replace=False)
        lines += [_SPECIAL_LINES[k] for k in picks] + ["3 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2"]
    if i % 250 == 3:
        lines.append("81 0.5 0.5 0.1 0.1")  # class out of range: the image is skipped
    newline = "\r\n" if i % 5 == 0 else "\n"
    bom = "\ufeff" if i % 11 == 0 else ""
    return bom + newline.join(lines) + newline


@pytest.fixture(scope="module")
def big_split(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """2,000 images (a few JPEG encodings, one corrupt file) with generated label files; returns the image paths."""
    root = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(16)
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    encoded = []
    for h, w in ((40, 60), (64, 48), (33, 90)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        encoded.append(cv2.imencode(".jpg", pixels)[1].tobytes())
    for i in range(2000):
        data = b"not an image" if i == 1234 else encoded[i % len(encoded)]
        (images / f"{i:06d}.jpg").write_bytes(data)
        text = _label_text(rng, i)
        if text is not None:
            (labels / f"{i:06d}.txt").write_text(text, encoding="utf-8", newline="")
    return list_image_files([images])


def _reference_labels(label_file: str) -> np.ndarray | None:
    """Labels as the scan computed them line by line: :func:`parse_row` per line, then ``np.unique`` dedupe."""
    if not os.path.exists(label_file):
        return np.zeros((0, 5), np.float32)
    rows = []
    for line in Path(label_file).read_text(encoding="utf-8-sig").splitlines():
        if line.split():
            row, problem = parse_row(line.split(), NC)
            if problem:
                return None
            rows.append(row)
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    _, first = np.unique(labels, axis=0, return_index=True)
    return labels[np.sort(first)]


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float32).tobytes()


@pytest.mark.slow
def test_scan_and_cache_give_bit_identical_labels_to_a_line_by_line_scan(big_split: list[str], tmp_path: Path) -> None:
    fresh = scan_split(big_split, NAMES, sources=[tmp_path], workers=2, progress=False, verbose=False)
    cached = scan_split(big_split, NAMES, sources=[tmp_path], workers=2, progress=False, verbose=False)
    assert not fresh.from_cache and cached.from_cache

    expected_files, expected_labels, expected_shapes = [], [], []
    for image in big_split:
        labels, check = _reference_labels(image_to_label_file(image)), verify_image(image)
        if labels is not None and check.shape is not None:
            expected_files.append(image)
            expected_labels.append(labels)
            expected_shapes.append(check.shape)
    corrupt = len(big_split) - len(expected_files)
    assert corrupt == 1 + 8  # the text file named .jpg; the 8 label files with class 81

    for result in (fresh, cached):
        assert result.image_files == expected_files
        assert result.shapes.tolist() == [list(s) for s in expected_shapes]
        assert [_bits(a) for a in result.labels] == [_bits(b) for b in expected_labels]
        assert result.summary.corrupt == corrupt and result.summary.boxes == sum(map(len, expected_labels))
    assert fresh.summary == cached.summary and fresh.messages == cached.messages
    assert fresh.summary.duplicates > 0 and fresh.summary.missing_labels == 20
    assert any("duplicate label line" in m for m in fresh.messages)


def test_cache_holds_plain_arrays_of_about_20_bytes_per_box(tiny_yaml: Path) -> None:
    files = list_image_files([tiny_yaml.parent / "images" / "train"])
    result = scan_split(files, ["circle", "rectangle", "triangle", "cross"], sources=[tiny_yaml.parent], workers=0)
    cache_file = label_cache_path([tiny_yaml.parent])
    with np.load(cache_file, allow_pickle=False) as npz:  # raises on any pickled member
        assert all(npz[name].dtype != object for name in npz.files)
        assert npz["boxes"].dtype == np.float32 and npz["boxes"].shape == (result.summary.boxes, 5)
    # YOLOv5's pickled cache holds about 37 bytes per box (32.5 MB for COCO's 876k boxes); this one 20 plus overhead
    assert cache_file.stat().st_size < 20 * result.summary.boxes + 40 * len(files) + 4096


def test_label_table_is_one_read_only_array(tiny_yaml: Path) -> None:
    files = list_image_files([tiny_yaml.parent / "images" / "train"])
    result = scan_split(files, ["circle", "rectangle", "triangle", "cross"], sources=[tiny_yaml.parent], workers=0)
    table = result.labels
    assert isinstance(table, LabelTable) and len(table) == len(result)
    assert all(np.shares_memory(lb, table.boxes) for lb in table if len(lb))
    with pytest.raises(ValueError, match="read-only"):
        table[int(np.argmax(table.counts))][0, 0] = 1
    arrays = [np.asarray(lb) for lb in table]
    picked = table.select(np.array([2, 0]))
    assert [_bits(a) for a in picked] == [_bits(arrays[2]), _bits(arrays[0])]
    single = table.with_classes(0.0)
    assert all((lb[:, 0] == 0).all() for lb in single) and (np.concatenate(arrays)[:, 0] > 0).any()
    assert _bits(table.boxes) == _bits(np.concatenate(arrays))  # unchanged by with_classes


def test_label_table_rejects_counts_that_do_not_match_the_boxes() -> None:
    with pytest.raises(ValueError, match="counts"):
        LabelTable(np.zeros((3, 5), np.float32), np.array([1, 1]))


def test_folder_listing_follows_file_links_not_folder_links(tmp_path: Path) -> None:
    folder, other = tmp_path / "images", tmp_path / "other"
    (folder / "sub").mkdir(parents=True)
    other.mkdir()
    for path in (folder / "a.jpg", folder / "sub" / "b.PNG", other / "c.jpg", folder / "notes.txt"):
        path.write_bytes(b"x")
    (folder / "linked_folder").symlink_to(other, target_is_directory=True)
    (folder / "linked.jpg").symlink_to(other / "c.jpg")
    (folder / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    (folder / "folder.jpg").mkdir()
    expected = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".png"))
    assert list_image_files([folder]) == expected
    assert [Path(p).name for p in expected] == ["a.jpg", "linked.jpg", "b.PNG"]


def test_a_cold_scan_writes_progress_lines_when_stderr_is_not_a_terminal(
    tiny_yaml: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)  # a line after every chunk
    monkeypatch.setattr(scan_module, "CHUNK", 4)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # output captured, as to a log file: not a terminal
    files = list_image_files([tiny_yaml.parent / "images" / "train"])
    assert len(files) == 12
    with caplog.at_level(logging.INFO, logger="lightning_yolo.data.progress"):
        scan_split(files, ["circle", "rectangle", "triangle", "cross"], sources=[tiny_yaml.parent], workers=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "lightning_yolo.data.progress"]
    assert [line.split(" (")[0] for line in lines[:2]] == ["Scanning train: 4/12", "Scanning train: 8/12"]
    assert lines[2].startswith("Scanning train: 12/12 done in") and len(lines) == 3
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning_yolo.data.progress"):
        scan_split(files, ["circle", "rectangle", "triangle", "cross"], sources=[tiny_yaml.parent], workers=0)
    assert not [r for r in caplog.records if r.name == "lightning_yolo.data.progress"]  # from the cache: no scan


def test_no_progress_lines_for_a_step_shorter_than_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lightning_yolo.data.progress"):
        assert list(progress_module._log_lines(range(5), 5, "Quick", interval=3600.0)) == list(range(5))
    assert not caplog.records


def test_bad_label_values_fall_back_to_line_by_line_messages() -> None:
    from lightning_yolo.data.labels import parse_label_text

    with pytest.raises(LabelError) as err:
        parse_label_text("0 0.5 0.5 0.1 0.1\n1.5 0.5 0.5 0.1 0.1\n0 nan 0.5 0.1 0.1\n", nc=3, source="f.txt")
    assert err.value.problems == ["f.txt:2: class id 1.5 is not an integer", "f.txt:3: NaN or infinite value"]


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_image_caches_write_progress_lines_when_stderr_is_not_a_terminal(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lightning_yolo.data import image_cache

    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    images = [np.full((4, 4, 3), i, np.uint8) for i in range(6)]
    with caplog.at_level(logging.INFO, logger="lightning_yolo.data.progress"):
        if kind == "ram":
            cached = image_cache.fill_ram_cache(6, images.__getitem__, workers=2, what="6 val images")
            assert [int(c[0, 0, 0]) for c in cached] == list(range(6))
        else:
            paths = [tmp_path / f"{i}.npy" for i in range(6)]
            assert image_cache.fill_disk_cache(paths, images.__getitem__, workers=2, what="6 val images") == 6
    lines = [r.getMessage() for r in caplog.records if r.name == "lightning_yolo.data.progress"]
    where = "in RAM" if kind == "ram" else "on disk"
    assert lines[0].startswith(f"Caching 6 val images {where}: 1/6 (")
    assert lines[-1].startswith(f"Caching 6 val images {where}: 6/6 done in")
