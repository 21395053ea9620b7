"""Webcam and network sources: a video served over HTTP on 127.0.0.1, reconnects after a broken connection, and
streams that cannot be opened or are gone."""

from __future__ import annotations

import functools
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from media_helpers import frame_count, write_video

from lightning_yolo.predict import main, streams
from lightning_yolo.predict.sources import FrameReader, SourceError
from lightning_yolo.predict.streams import StreamReader, is_stream, stream_label, stream_name

FRAMES = 12


@pytest.fixture(scope="module")
def weights(shared: Path) -> Path:
    return shared / "weights" / "yolov5n.pt"


@pytest.fixture(autouse=True)
def _quiet_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """predict sets this for streams when unset; setting it here keeps the test process's environment as it was."""
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def files_in(folder: Path) -> type[BaseHTTPRequestHandler]:
    return functools.partial(QuietFiles, directory=str(folder))  # type: ignore[return-value]


def breaking(data: bytes, plan: list[str]) -> type[BaseHTTPRequestHandler]:
    """A handler serving ``data`` at any path; request i follows ``plan[i]`` (the last entry repeats): ``"full"``,
    ``"half"`` (the headers promise all of it, half is sent, then the connection is cut) or ``"404"``."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            step = plan[min(len(requests), len(plan) - 1)]
            requests.append(step)
            if step == "404":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if step == "full" else data[: len(data) // 2])
            if step == "half":
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

    Handler.requests = requests  # type: ignore[attr-defined]
    return Handler


def free_port() -> int:
    """A port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_this_opencv_reads_network_streams_through_ffmpeg() -> None:
    assert re.search(r"FFMPEG:\s+YES", cv2.getBuildInformation())


@pytest.mark.parametrize(
    ("source", "expected"),
    [("0", True), ("12", True), ("rtsp://cam/live", True), ("RTMP://x/y", True), ("https://a/b.mp4", True)],
)
def test_webcam_indices_and_stream_urls_are_streams(source: str, expected: bool) -> None:
    assert is_stream(source) is expected
    assert not is_stream("clip.mp4") and not is_stream("data/images") and not is_stream("file:///x.mp4")


def test_stream_names_and_labels_hide_passwords() -> None:
    assert stream_name("0") == "0" and stream_label("0") == "webcam 0"
    assert stream_name("http://127.0.0.1:8000/videos/clip.avi") == "clip.avi"
    assert stream_name("rtsp://user:pw@cam.local:554/") == "cam.local"
    assert stream_name("http://host/live?id=3&x=:") == "live"
    assert stream_label("rtsp://admin:s3cret@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert stream_label("http://host/a.mp4") == "http://host/a.mp4"


@pytest.mark.slow
def test_http_video_is_predicted_frame_by_frame(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_video(tmp_path / "www" / "clip.avi", FRAMES)
    with serving(files_in(tmp_path / "www")) as port:
        url = f"http://127.0.0.1:{port}/clip.avi"
        argv = ["--weights", str(weights), "--source", url, "--imgsz", "160", "--project", str(tmp_path / "runs")]
        assert main([*argv, "--save-txt", "--save-csv"]) == 0
        assert main([*argv, "--vid-stride", "5", "--save-txt"]) == 0
    out = capsys.readouterr().out
    assert f"{FRAMES} pictures" in out and f"{FRAMES // 5} pictures" in out
    run, strided = tmp_path / "runs" / "exp", tmp_path / "runs" / "exp2"
    assert sorted(p.name for p in (run / "labels").iterdir()) == sorted(f"clip_{i}.txt" for i in range(1, FRAMES + 1))
    assert frame_count(run / "clip.mp4") == FRAMES
    assert (run / "predictions.csv").read_text().startswith("Image Name,Prediction,Confidence")
    assert sorted(p.name for p in (strided / "labels").iterdir()) == ["clip_10.txt", "clip_5.txt"]
    assert frame_count(strided / "clip.mp4") == FRAMES // 5


def test_picture_url_gives_one_picture(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "www").mkdir()
    cv2.imwrite(str(tmp_path / "www" / "street.jpg"), np.full((96, 128, 3), 120, np.uint8))
    with serving(files_in(tmp_path / "www")) as port:
        source = f"http://127.0.0.1:{port}/street.jpg"
        assert main(["--weights", str(weights), "--source", source, "--imgsz", "160", "--project", str(tmp_path)]) == 0
    assert "1 pictures" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "exp" / "street.jpg")).shape == (96, 128, 3)


def _main_within(argv: list[str], seconds: float) -> tuple[int, float]:
    """Run predict in a thread, so a hanging open fails the test instead of stalling it; returns (status, time)."""
    result: list[int] = []
    start = time.perf_counter()
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"predict still running after {seconds} s"
    return result[0], time.perf_counter() - start


@pytest.mark.parametrize("kind", ["closed_port", "not_found"])
def test_stream_that_cannot_be_opened_is_a_quick_one_line_error(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    argv = ["--weights", str(weights), "--project", str(tmp_path / "runs")]
    if kind == "closed_port":
        url = f"http://127.0.0.1:{free_port()}/clip.avi"
        status, seconds = _main_within([*argv, "--source", url], seconds=60)
    else:
        (tmp_path / "www").mkdir()
        with serving(files_in(tmp_path / "www")) as port:
            url = f"http://127.0.0.1:{port}/missing.avi"
            status, seconds = _main_within([*argv, "--source", url], seconds=60)
    assert status == 2 and seconds < 5
    assert capsys.readouterr().err == f"error: {url}: cannot open the stream (not found, refused or timed out)\n"
    assert not (tmp_path / "runs").exists()  # it failed before the model was loaded or a run folder made


def test_missing_webcam_is_a_one_line_error(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, _ = _main_within(["--weights", str(weights), "--source", "99", "--project", str(tmp_path)], seconds=60)
    assert status == 2
    assert capsys.readouterr().err == "error: webcam 99: cannot open the camera (no such device, or it is busy)\n"


def test_broken_connection_reconnects_where_the_video_stopped(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", FRAMES)
    expected = [f.image for f in FrameReader([video])]
    handler = breaking(video.read_bytes(), ["half", "full"])
    with serving(handler) as port:
        reader = StreamReader(f"http://127.0.0.1:{port}/clip.avi", backoff_s=0.01)
        frames = list(reader)
    assert handler.requests == ["half", "full"] and reader.reconnects == 1  # type: ignore[attr-defined]
    assert [f.frame for f in frames] == list(range(1, FRAMES + 1))  # none lost, none twice
    assert all(np.array_equal(f.image, expected[f.frame - 1]) for f in frames[-3:])  # after the seek: the right ones


def test_stream_gone_mid_run_is_a_one_line_error_and_keeps_what_was_predicted(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(streams, "BACKOFF_S", 0.01)
    video = write_video(tmp_path / "clip.avi", FRAMES)
    with serving(breaking(video.read_bytes(), ["half", "404"])) as port:
        url = f"http://127.0.0.1:{port}/clip.avi"
        argv = ["--weights", str(weights), "--source", url, "--imgsz", "160", "--project", str(tmp_path / "runs")]
        status, _ = _main_within([*argv, "--save-txt", "--batch-size", "1"], seconds=60)
    assert status == 2
    lines = capsys.readouterr().err.splitlines()
    found = re.fullmatch(
        rf"error: {re.escape(url)}: the stream is gone after (\d+) frames \(3 reconnects failed\)", lines[-1]
    )
    assert found, lines
    assert all("reconnecting" in line for line in lines[:-1])  # the only other lines: the reconnect warnings
    read = int(found.group(1))
    assert 0 < read < FRAMES
    assert len(list((tmp_path / "runs" / "exp" / "labels").iterdir())) == read
    assert frame_count(tmp_path / "runs" / "exp" / "clip.mp4") == read


class FakeCapture:
    """A capture giving ``frames`` (None: a failed read) and then failing; ``opened=False`` for a failed open."""

    def __init__(self, frames: list[int | None] = (), opened: bool = True, count: float = 0) -> None:
        self.frames, self.opened, self.count = list(frames), opened, count
        self.current: int | None = None

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.opened

    def get(self, prop: int) -> float:
        return self.count if prop == cv2.CAP_PROP_FRAME_COUNT else 25.0

    def grab(self) -> bool:
        self.current = self.frames.pop(0) if self.opened and self.frames else None
        return self.current is not None

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.full((8, 8, 3), self.current, np.uint8)

    def set(self, prop: int, value: float) -> bool:
        return True

    def release(self) -> None:
        self.opened = False


def test_live_stream_reconnects_with_a_doubling_pause_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(streams, "time", SimpleNamespace(sleep=pauses.append))
    captures = iter(
        [FakeCapture([1, 2, None]), FakeCapture(opened=False), FakeCapture([3, None])] + [FakeCapture(opened=False)] * 3
    )
    reader = StreamReader("rtsp://cam/live", retries=3, backoff_s=0.5, opener=lambda source: next(captures))
    seen = []
    with pytest.raises(SourceError, match=re.escape("rtsp://cam/live: the stream is gone after 3 frames (3 recon")):
        for frame in reader:
            seen.append((frame.frame, int(frame.image[0, 0, 0])))
    assert seen == [(1, 1), (2, 2), (3, 3)]  # numbering goes on across the reconnect
    assert pauses == [0.5, 1.0, 0.5, 1.0, 2.0]  # the count starts again after a frame was read
    assert reader.frames == 0 and reader.reconnects == 5


def test_live_stream_keeps_every_nth_frame_across_reconnects_and_releases_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "time", SimpleNamespace(sleep=lambda s: None))
    made = [FakeCapture([1, 2, 3]), FakeCapture([4, 5, 6, 7]), FakeCapture([8])]
    captures = iter([*made, FakeCapture(opened=False)])
    reader = StreamReader("0", vid_stride=2, retries=1, opener=lambda source: next(captures))
    frames = []
    for frame in reader:
        frames.append(frame)
        if frame.frame == 8:
            break  # the run stops (Ctrl-C) while the third connection is open
    assert [(f.frame, int(f.image[0, 0, 0])) for f in frames] == [(2, 2), (4, 4), (6, 6), (8, 8)]
    assert frames[0].fps == 12.5 and str(frames[0].path) == "0"
    assert not any(c.isOpened() for c in made)  # every connection released, the reconnected one too


def test_video_url_ends_after_its_frame_count_without_reconnecting() -> None:
    opened = []

    def opener(source: str) -> FakeCapture:
        opened.append(source)
        return FakeCapture([1, 2, 3], count=3)

    reader = StreamReader("http://host/clip.mp4", opener=opener)
    assert [f.frame for f in reader] == [1, 2, 3] and reader.frames == 3
    assert opened == ["http://host/clip.mp4"] and reader.reconnects == 0
