"""The served endpoint under load: 200 requests from 8 clients at once, each answer equal to ``predict``'s on the
same file, bad requests mixed in and sent after the load answered with a 4xx, and the server still up after them.

The server runs as ``python -m lightning_yolo serve`` in its own process group and is always stopped (SIGTERM,
then SIGKILL for anything left) when the module's tests end.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_helpers import envelope, json_body, multipart

from lightning_yolo.predict import main as predict_main

pytestmark = pytest.mark.slow

IMGSZ = "320"
MAX_IMAGE_MB = "2"
HEALTH_POLLS = 600  # x 0.25 s: model loading in a spawned worker on a busy 2-core machine
REQUESTS, CLIENTS = 200, 8


@dataclass
class Server:
    url: str
    host: str
    port: int
    process: subprocess.Popen
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - a local test server
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - a local test server
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group it leads: LitServe's workers, if any are left
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


@pytest.fixture(scope="module")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("litserve")
    port, log = _free_port(), tmp_path_factory.mktemp("serve") / "server.log"
    command = [sys.executable, "-m", "lightning_yolo", "serve", "--weights", str(shared / "weights" / "yolov5n.pt")]
    command += ["--imgsz", IMGSZ, "--port", str(port), "--max-batch-size", "4", "--batch-timeout", "0.01"]
    command += ["--max-image-mb", MAX_IMAGE_MB, "--threads", "1", "--log-level", "warning"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    running = Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log)
    try:
        for _ in range(HEALTH_POLLS):
            if process.poll() is not None or _get(running.url + "/health")[0] == 200:
                break
            time.sleep(0.25)
        if _get(running.url + "/health")[0] != 200:
            pytest.fail(f"the server did not become healthy:\n{log.read_text()[-3000:]}")
        yield running
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def expected(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[float]]]:
    """``predict``'s labels (``cls x y w h conf``, normalised) for each image, from its ``--save-txt`` files."""
    project = tmp_path_factory.mktemp("predict")
    argv = ["--weights", str(shared / "weights" / "yolov5n.pt"), "--source", str(shared / "images")]
    argv += ["--imgsz", IMGSZ, "--save-txt", "--save-conf", "--nosave", "--project", str(project)]
    assert predict_main(argv) == 0
    labels = sorted((project / "exp" / "labels").iterdir())
    found = {p.stem: [[float(v) for v in line.split()] for line in p.read_text().splitlines()] for p in labels}
    assert set(found) == {"bus", "zidane"} and all(found.values())
    return found


def _assert_same_as_predict(answer: dict, rows: list[list[float]]) -> None:
    """Same classes in the same order, boxes within a pixel (both round to whole pixels), confidences within 1e-3."""
    w, h = answer["width"], answer["height"]
    got = answer["detections"]
    assert [d["class"] for d in got] == [int(r[0]) for r in rows]
    for d, (_, x, y, bw, bh, conf) in zip(got, rows, strict=True):
        x1, y1, x2, y2 = d["box"]
        assert abs((x1 + x2) / 2 - x * w) <= 1.01 and abs((y1 + y2) / 2 - y * h) <= 1.01
        assert abs((x2 - x1) - bw * w) <= 1.01 and abs((y2 - y1) - bh * h) <= 1.01
        assert abs(d["confidence"] - conf) <= 1e-3
        assert d["name"] in ("person", "bus", "tie")


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def test_concurrent_requests_match_predict_and_bad_ones_do_not_spoil_their_batch(
    server: Server, expected: dict, shared: Path
) -> None:
    files = {name: (shared / "images" / f"{name}.jpg").read_bytes() for name in expected}
    good = [(name, kind) for name in files for kind in ("raw", "form", "json")]
    plan = list(itertools.islice(itertools.cycle(good), REQUESTS))
    plan[::10] = [("text", "raw"), ("truncated", "raw")] * (len(plan[::10]) // 2)  # 10 % bad, batched with good

    def send(item: tuple[str, str]) -> tuple[str, int, dict]:
        name, kind = item
        data = b"plain text, not a picture\n" * 50 if name == "text" else None
        data = _truncated(files["bus"]) if name == "truncated" else data or files[name]
        status, answer = _post(server.url + "/predict", *envelope(kind, data))
        return name, status, answer

    with ThreadPoolExecutor(CLIENTS) as clients:
        results = list(clients.map(send, plan))
    assert len(results) == REQUESTS
    for name, status, answer in results:
        if name in ("text", "truncated"):
            assert status == 422, answer
            assert ("not an image" if name == "text" else "truncated JPEG") in answer["detail"]
        else:
            assert status == 200, answer
            _assert_same_as_predict(answer, expected[name])
    assert server.process.poll() is None


def _huge_declared_body(server: Server) -> int:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "image/jpeg")
        connection.putheader("Content-Length", str(10**12))
        connection.endheaders(b"\xff\xd8" + b"\0" * 1000)
        return connection.getresponse().status
    finally:
        connection.close()


def test_bad_requests_get_4xx_and_leave_the_server_up(server: Server, expected: dict, shared: Path) -> None:
    bus = (shared / "images" / "bus.jpg").read_bytes()
    url = server.url + "/predict"
    cases = {
        "text bytes": (_post(url, b"hello, world\n" * 10, "text/plain"), 422),
        "truncated JPEG": (_post(url, _truncated(bus), "image/jpeg"), 422),
        "0-byte body": (_post(url, b"", "image/jpeg"), 400),
        "JSON with a wrong field": (_post(url, *json_body(bus, field="picture")), 400),
        "base64 garbage": (_post(url, b'{"image": "%%% not base64 %%%"}', "application/json"), 400),
        "malformed JSON": (_post(url, b'{"image": ', "application/json"), 400),
        "form without the field": (_post(url, *multipart(bus, field="file")), 400),
        # over --max-image-mb but within the body limit (room for base64): read in full, then refused
        "image over the limit": (_post(url, b"\xff\xd8" + b"\0" * (int(MAX_IMAGE_MB) << 20), "image/jpeg"), 413),
    }
    for case, ((status, answer), wanted) in cases.items():
        assert status == wanted, (case, status, answer)
        assert isinstance(answer.get("detail"), str) and answer["detail"], case
    assert _huge_declared_body(server) == 413
    assert _get(server.url + "/health") == (200, b"ok")
    status, answer = _post(url, bus, "image/jpeg")
    assert status == 200
    _assert_same_as_predict(answer, expected["bus"])
    assert server.process.poll() is None
