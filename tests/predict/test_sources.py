"""Prediction sources: what each kind of source names, and how missing, empty and unreadable ones are reported."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from media_helpers import write_video

from lightning_yolo.predict import main as predict_main
from lightning_yolo.predict.sources import FrameReader, SourceError, resolve_sources


def _image(path: Path, h: int = 48, w: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return path


def test_single_image_and_folder_in_sorted_order_without_other_files(tmp_path: Path) -> None:
    b, a = _image(tmp_path / "b.jpg"), _image(tmp_path / "a.png")
    (tmp_path / "notes.md").write_text("not a picture")
    _image(tmp_path / "sub" / "c.jpg")  # folders are not searched recursively
    assert resolve_sources(b) == [b]
    assert resolve_sources(tmp_path) == [a, b]


def test_glob_pattern_recurses_with_double_star(tmp_path: Path) -> None:
    a, c = _image(tmp_path / "a.jpg"), _image(tmp_path / "sub" / "c.jpg")
    assert resolve_sources(str(tmp_path / "*.jpg")) == [a]
    assert resolve_sources(str(tmp_path / "**" / "*.jpg")) == sorted([a, c])


def test_txt_list_resolves_relative_entries_and_skips_blank_lines(tmp_path: Path) -> None:
    a, b = _image(tmp_path / "img" / "a.jpg"), _image(tmp_path / "img" / "b.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text(f"img/a.jpg\n\n{b}\n")
    assert resolve_sources(listing) == [a, b]


def test_txt_list_with_missing_entry_names_file_and_line(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text("a.jpg\nmissing.jpg\n")
    with pytest.raises(SourceError, match=r"list\.txt:2: 'missing\.jpg' does not exist"):
        resolve_sources(listing)


@pytest.mark.parametrize("kind", ["missing", "empty_folder", "glob_no_match", "wrong_suffix"])
def test_unusable_sources_raise_naming_the_path(tmp_path: Path, kind: str) -> None:
    source = {
        "missing": tmp_path / "nope.jpg",
        "empty_folder": tmp_path / "empty",
        "glob_no_match": tmp_path / "*.png",
        "wrong_suffix": tmp_path / "data.csv",
    }[kind]
    (tmp_path / "empty").mkdir()
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(SourceError, match=str(source).replace("*", r"\*").replace(".", r"\.")):
        resolve_sources(source)


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    good = _image(tmp_path / "good.jpg")
    (tmp_path / "text.jpg").write_text("this is not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    reader = FrameReader(resolve_sources(tmp_path))
    frames = list(reader)
    assert [f.path for f in frames] == [good]
    assert frames[0].image.shape == (48, 64, 3) and frames[0].frame == 0
    assert sorted(p.name for p, _ in reader.skipped) == ["empty.png", "text.jpg"]


def test_video_frames_are_numbered_from_one(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=5)
    frames = list(FrameReader(resolve_sources(video)))
    assert [f.frame for f in frames] == [1, 2, 3, 4, 5]
    assert all(f.is_video and f.image.shape == (64, 96, 3) for f in frames)


def test_unreadable_video_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    reader = FrameReader(resolve_sources(tmp_path))
    assert list(reader) == []
    assert [p.name for p, _ in reader.skipped] == ["broken.mp4"]


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A ~70-byte PNG whose header declares ``width`` x ``height`` pixels (a 1x1 PNG with IHDR and its CRC patched):
    what a decompression bomb looks like before anything is decoded."""
    ok, encoded = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    data = bytearray(encoded.tobytes())
    assert ok and data[12:16] == b"IHDR"  # 8-byte signature, 4-byte chunk length, then the chunk type
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC over type + 13 data bytes
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (30_000, 30_000, "900000000 pixels"),  # over twice PIL's limit: refused when the header is opened
        (10_000, 9_000, "10000x9000 pixels exceeds the limit of 89478485"),  # over the project's limit only
    ],
)
def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path, width: int, height: int, reason: str) -> None:
    bomb = png_bomb(tmp_path / "bomb.png", width, height)
    good = _image(tmp_path / "good.jpg")
    reader = FrameReader(resolve_sources(tmp_path))
    start = time.perf_counter()
    frames = list(reader)
    assert time.perf_counter() - start < 0.5
    assert [f.path for f in frames] == [good]
    [(path, why)] = reader.skipped
    assert path == bomb and why.startswith("decompression bomb: ") and reason in why


def test_decompression_bomb_in_a_folder_is_skipped_and_counted(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "pics"
    _image(folder / "ok.jpg")
    bomb = png_bomb(folder / "bomb.png", 30_000, 30_000)
    weights = shared / "weights" / "yolov5n.pt"
    argv = ["--weights", str(weights), "--source", str(folder), "--imgsz", "160", "--project", str(tmp_path / "runs")]
    assert predict_main(argv) == 0
    captured = capsys.readouterr()
    assert "1 pictures" in captured.out and "1 skipped" in captured.out
    line = next(line for line in captured.err.splitlines() if line.startswith(f"skipped {bomb}: "))
    assert "decompression bomb" in line and "900000000 pixels" in line


def test_vid_stride_reads_every_nth_frame_by_its_position(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=7)
    every = list(FrameReader([video]))
    strided = list(FrameReader([video], vid_stride=3))
    assert [f.frame for f in strided] == [3, 6]
    assert all(np.array_equal(f.image, every[f.frame - 1].image) for f in strided)  # the n-th frames, not the first
    assert strided[0].fps == pytest.approx(every[0].fps / 3)


def test_vid_stride_longer_than_the_video_skips_it(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=4)
    reader = FrameReader([video], vid_stride=5)
    assert list(reader) == []
    assert reader.skipped == [(video, "the video has 4 frames, fewer than the frame stride 5")]
