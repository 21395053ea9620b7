"""Label parsing rules (RELIABILITY "Bad labels"), property tests, image decoding, and the scan cache."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from lightning_yolo.data.cache import CACHE_ENV, label_cache_path
from lightning_yolo.data.config import DatasetError
from lightning_yolo.data.images import jpeg_reduction, load_image_bgr, verify_image
from lightning_yolo.data.labels import COORD_TOLERANCE, LabelError, parse_label_file, parse_label_text
from lightning_yolo.data.scan import scan_split

# ------------------------------------------------------------------------------------------------ parse rules


def test_good_lines_parse_to_class_and_normalised_xywh() -> None:
    parsed = parse_label_text("0 0.5 0.5 0.2 0.4\n3 0.25 0.75 0.1 0.1\n", nc=4)
    expected = np.array([[0, 0.5, 0.5, 0.2, 0.4], [3, 0.25, 0.75, 0.1, 0.1]], dtype=np.float32)
    np.testing.assert_array_equal(parsed.labels, expected)
    assert parsed.labels.dtype == np.float32 and parsed.warnings == [] and parsed.duplicates == 0


def test_bom_crlf_tabs_and_blank_lines_are_accepted() -> None:
    parsed = parse_label_text("\ufeff1\t0.5 0.5 0.2 0.2\r\n\r\n   \r\n0 0.1 0.1 0.1 0.1\r\n", nc=2)
    assert parsed.labels.shape == (2, 5) and parsed.labels[0, 0] == 1


def test_duplicate_lines_are_dropped_counted_and_named() -> None:
    a, b = "0 0.5 0.5 0.2 0.2\n", "1 0.5 0.5 0.2 0.2\n"
    parsed = parse_label_text(a + b + a + a, 2, "x.txt")
    assert parsed.duplicates == 2 and len(parsed.labels) == 2
    assert parsed.labels[:, 0].tolist() == [0, 1]  # first occurrences, in file order
    assert parsed.warnings == ["x.txt: 2 duplicate label lines removed"]


def test_polygon_lines_become_their_bounding_box() -> None:
    parsed = parse_label_text("2 0.1 0.2 0.3 0.2 0.2 0.6\n", nc=3)
    np.testing.assert_allclose(parsed.labels, [[2, 0.2, 0.4, 0.2, 0.4]], atol=1e-7)


def test_coordinates_within_tolerance_are_clipped() -> None:
    parsed = parse_label_text(f"0 {1 + COORD_TOLERANCE / 2} 0.5 0.2 0.2\n0 {-COORD_TOLERANCE / 2} 0.5 0.2 0.2\n", 1)
    assert parsed.labels[:, 1:].min() >= 0 and parsed.labels[:, 1:].max() <= 1


def test_a_box_reaching_past_the_border_is_clipped_to_the_image() -> None:
    (row,) = parse_label_text("0 0.9 0.5 0.4 0.2\n", nc=1).labels
    np.testing.assert_allclose(row, [0, 0.85, 0.5, 0.3, 0.2], atol=1e-7)  # x from 0.7..1.1 to 0.7..1.0


BAD_LINES = {
    "4 values": ("0 0.5 0.5 0.2", "expected 5 values"),
    "6 values": ("0 0.5 0.5 0.2 0.2 0.1", "expected 5 values"),
    "text": ("0 0.5 abc 0.2 0.2", "not a number: 'abc'"),
    "nan": ("0 nan 0.5 0.2 0.2", "NaN or infinite"),
    "inf": ("0 0.5 0.5 inf 0.2", "NaN or infinite"),
    "negative coordinate": ("0 0.5 -0.2 0.2 0.2", "negative coordinate"),
    "negative class": ("-1 0.5 0.5 0.2 0.2", "negative class"),
    "class >= nc": ("3 0.5 0.5 0.2 0.2", "class id 3 >= nc (3)"),
    "non-integer class": ("1.5 0.5 0.5 0.2 0.2", "not an integer"),
    "coordinate > 1": ("0 0.5 0.5 1.2 0.2", "> 1"),
    "zero width": ("0 0.5 0.5 0 0.2", "zero width or height"),
    "zero height": ("0 0.5 0.5 0.2 0.0", "zero width or height"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_is_reported_with_file_and_line(case: str) -> None:
    line, reason = BAD_LINES[case]
    with pytest.raises(LabelError) as err:
        parse_label_text(f"0 0.5 0.5 0.1 0.1\n{line}\n", nc=3, source="lbl.txt")
    assert err.value.problems[0].startswith("lbl.txt:2: ")
    assert reason in err.value.problems[0]


def test_every_bad_line_of_a_file_is_listed() -> None:
    with pytest.raises(LabelError) as err:
        parse_label_text("x\n0 0.5 0.5 0.1 0.1\n9 0.5 0.5 0.1 0.1\n", nc=2, source="f.txt")
    assert [p.split(": ")[0] for p in err.value.problems] == ["f.txt:1", "f.txt:3"]


def test_missing_and_empty_files_are_backgrounds(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    for name in ("missing.txt", "empty.txt"):
        parsed = parse_label_file(tmp_path / name, nc=1)
        assert parsed.labels.shape == (0, 5) and parsed.labels.dtype == np.float32


def test_non_utf8_file_is_a_label_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"0 0.5 0.5 0.1 0.1 \xff\xfe\n")
    with pytest.raises(LabelError, match="latin.txt: not UTF-8"):
        parse_label_file(path, nc=1)


# ------------------------------------------------------------------------------------------------ properties

unit = st.floats(0.0, 1.0, width=32, allow_subnormal=False)


@st.composite
def label_arrays(draw: st.DrawFn) -> np.ndarray:
    """Unique float32 rows whose boxes lie inside the image with positive size."""
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        x, y = draw(unit), draw(unit)
        w = draw(st.floats(0.0009765625, 1.0, width=32)) * 2 * min(x, 1 - x)
        h = draw(st.floats(0.0009765625, 1.0, width=32)) * 2 * min(y, 1 - y)
        row = np.array([draw(st.integers(0, 9)), x, y, w, h], dtype=np.float64).astype(np.float32)
        cx, cy, bw, bh = (float(v) for v in row[1:])
        assume(bw > 0 and bh > 0 and cx - bw / 2 >= 0 and cy - bh / 2 >= 0 and cx + bw / 2 <= 1 and cy + bh / 2 <= 1)
        rows.append(row)
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    assume(len(np.unique(labels, axis=0)) == len(labels))
    return labels


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(label_arrays())
def test_float32_label_text_parses_back_exactly(labels: np.ndarray) -> None:
    # str() of a float32 is the shortest text that reads back as the same float32
    text = "".join(" ".join([str(int(row[0])), *(str(v) for v in row[1:])]) + "\n" for row in labels)
    parsed = parse_label_text(text, nc=10)
    np.testing.assert_array_equal(parsed.labels, labels)
    assert parsed.duplicates == 0


label_alphabet = st.sampled_from(list("0123456789 .-+eE\t\n\r") + ["nan", "inf", "1e99", "\ufeff", "x", "_", "٣"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(label_alphabet, max_size=60).map("".join)))
def test_random_text_only_returns_labels_or_raises_label_error(text: str) -> None:
    try:
        parsed = parse_label_text(text, nc=5)
    except LabelError as err:
        assert err.problems and all(":" in p for p in err.problems)
        return
    labels = parsed.labels
    assert labels.dtype == np.float32 and labels.ndim == 2 and labels.shape[1] == 5
    assert np.isfinite(labels).all() and (labels[:, 1:] >= 0).all() and (labels[:, 1:] <= 1).all()
    assert ((labels[:, 0] >= 0) & (labels[:, 0] < 5)).all() and (labels[:, 3:] > 0).all()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file_only_raise_label_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.txt"
    path.write_bytes(data)
    try:
        parse_label_file(path, nc=3)
    except LabelError:
        pass


# ------------------------------------------------------------------------------------------------ images


def _jpeg_with_orientation(pixels_rgb: np.ndarray, orientation: int) -> bytes:
    image = Image.fromarray(pixels_rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(("orientation", "turns"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied_to_shape_and_pixels(tmp_path: Path, orientation: int, turns: int) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_jpeg_with_orientation(stored, orientation))
    expected = np.rot90(stored, turns)  # orientation 6: the viewer turns the stored pixels 90 degrees clockwise
    check = verify_image(path)
    assert check.shape == expected.shape[:2] and not check.error
    loaded = load_image_bgr(path)
    assert loaded.shape == expected.shape
    assert np.abs(loaded.astype(int) - expected[..., ::-1]).mean() < 3


@pytest.mark.parametrize(
    ("long_side", "target", "reduction"), [(639, 320, 1), (640, 320, 2), (4032, 640, 4), (5120, 640, 8)]
)
def test_jpeg_reduction_keeps_at_least_the_target_size(long_side: int, target: int, reduction: int) -> None:
    assert jpeg_reduction(long_side, target) == reduction


@pytest.mark.parametrize("orientation", [1, 6])
def test_reduced_jpeg_decode_keeps_orientation_and_averages_pixels(tmp_path: Path, orientation: int) -> None:
    yy, xx = np.mgrid[0:64, 0:96]
    stored = np.dstack([xx * 2, yy * 3, (xx + yy) * 1.5]).astype(np.uint8)
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(_jpeg_with_orientation(stored, orientation))
    full, quarter = load_image_bgr(path), load_image_bgr(path, reduction=4)
    assert quarter.shape == (full.shape[0] // 4, full.shape[1] // 4, 3)  # rotated like the full decode
    area = cv2.resize(full, quarter.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(quarter.astype(int) - area).mean() < 3


def test_reduction_is_ignored_by_formats_without_dct_scaling(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    path.write_bytes(_encode_pil(Image.fromarray(RGB), "PNG"))
    np.testing.assert_array_equal(load_image_bgr(path, reduction=2), load_image_bgr(path))


def _encode_pil(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


RGB = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
CONVERSIONS = {
    "grey.png": lambda: _encode_pil(Image.fromarray(RGB[..., 0]), "PNG"),
    "rgba.png": lambda: _encode_pil(Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG"),
    "palette.png": lambda: _encode_pil(Image.fromarray(RGB).convert("P"), "PNG"),
    "grey16.png": lambda: _encode_pil(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257), "PNG"),
    "rgb16.png": lambda: cv2.imencode(".png", RGB.astype(np.uint16) * 257)[1].tobytes(),
    "cmyk.jpg": lambda: _encode_pil(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=100),
    "float.tif": lambda: _encode_pil(Image.fromarray(RGB[..., 0].astype(np.float32) / 255), "TIFF"),
    "bilevel.png": lambda: _encode_pil(Image.fromarray(RGB[..., 0] > 127), "PNG"),
    "rgb.webp": lambda: _encode_pil(Image.fromarray(RGB), "WEBP", lossless=True),
    "rgb.bmp": lambda: _encode_pil(Image.fromarray(RGB), "BMP"),
}


@pytest.mark.parametrize("name", sorted(CONVERSIONS))
def test_every_image_kind_loads_as_three_channel_uint8(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(CONVERSIONS[name]())
    assert verify_image(path).shape == (24, 32)
    img = load_image_bgr(path)
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8 and img.flags.c_contiguous


def test_grey_image_values_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    path.write_bytes(CONVERSIONS["grey16.png"]())
    img = load_image_bgr(path)
    np.testing.assert_array_equal(img, np.repeat(RGB[..., :1], 3, axis=2))


def test_load_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="gone.jpg"):
        load_image_bgr(tmp_path / "gone.jpg")


# ------------------------------------------------------------------------------------------------ scan cache


def _scan(yaml_root: Path, split: str = "train"):
    files = sorted(str(p) for p in (yaml_root / "images" / split).iterdir())
    return scan_split(files, ["circle", "rectangle", "triangle", "cross"], split=split, sources=[yaml_root], workers=2)


def test_scan_cache_lives_in_the_cache_folder_and_is_reused(tiny_yaml: Path, cache_folder: Path) -> None:
    first = _scan(tiny_yaml.parent)
    assert not first.from_cache and len(first) == 12
    cache_file = label_cache_path([tiny_yaml.parent])
    assert cache_file.is_file() and cache_folder in cache_file.parents
    with np.load(cache_file, allow_pickle=False) as npz:  # plain arrays, never a pickle
        assert all(npz[name].dtype != object for name in npz.files)
    second = _scan(tiny_yaml.parent)
    assert second.from_cache and second.image_files == first.image_files
    for a, b in zip(first.labels, second.labels, strict=True):
        np.testing.assert_array_equal(a, b)
    assert os.environ[CACHE_ENV] == str(cache_folder)


def test_touching_a_label_file_forces_a_rescan(tiny_yaml: Path) -> None:
    root = tiny_yaml.parent
    _scan(root)
    label = next((root / "labels" / "train").glob("*.txt"))
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not _scan(root).from_cache
    assert _scan(root).from_cache


def test_editing_an_image_or_a_label_changes_the_result(tiny_yaml: Path) -> None:
    root = tiny_yaml.parent
    before = _scan(root)
    label = root / "labels" / "train" / "000000.txt"
    label.write_text("3 0.5 0.5 0.25 0.25\n")
    after = _scan(root)
    assert not after.from_cache
    np.testing.assert_array_equal(after.labels[0], [[3, 0.5, 0.5, 0.25, 0.25]])
    image = root / "images" / "train" / "000001.jpg"
    image.write_bytes(b"not an image any more")
    again = _scan(root)
    assert not again.from_cache and again.summary.corrupt == before.summary.corrupt + 1


def test_changing_names_forces_a_rescan(tiny_yaml: Path) -> None:
    root = tiny_yaml.parent
    _scan(root)
    files = sorted(str(p) for p in (root / "images" / "train").iterdir())
    result = scan_split(files, ["a", "b", "c", "d"], sources=[root], workers=0)
    assert not result.from_cache


def test_a_damaged_cache_file_is_ignored_and_rewritten(tiny_yaml: Path) -> None:
    root = tiny_yaml.parent
    _scan(root)
    label_cache_path([root]).write_text("{ not json")
    assert not _scan(root).from_cache
    assert _scan(root).from_cache


VALID = {
    "a.jpg": cv2.imencode(".jpg", RGB)[1].tobytes(),
    "a.png": cv2.imencode(".png", RGB)[1].tobytes(),
    "a.webp": cv2.imencode(".webp", RGB)[1].tobytes(),
    "a.bmp": cv2.imencode(".bmp", RGB)[1].tobytes(),
    "a.tif": cv2.imencode(".tiff", RGB)[1].tobytes(),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(sorted(VALID)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.integers(0, 10**6),
)
def test_damaged_images_are_reported_never_raised(tmp_path: Path, name: str, edits: list, cut: int) -> None:
    data = bytearray(VALID[name])
    for offset, value in edits:
        data[offset % len(data)] = value
    path = tmp_path / name
    path.write_bytes(bytes(data[: max(len(data) - cut % (len(data) + 1), 0)]))
    check = verify_image(path)
    if check.shape is None:
        assert check.error
        return
    try:
        img = load_image_bgr(path)
    except DatasetError:
        return  # the dataset replaces such an image and counts it
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
