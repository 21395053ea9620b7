"""The LitServe API in-process: a batch mixing good and bad uploads answers each request on its own, and the
upload gate answers malformed requests itself, passing other routes through."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
from serve_helpers import envelope

from lightning_yolo.predict import Predictor, PredictSettings, load_detector
from lightning_yolo.serve.detections import detections_json

# starlette's TestClient says it wants httpx2 some day; the tests are about the gate, not the client
pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")


def test_detections_json_keeps_predict_order_and_pixels() -> None:
    det = torch.tensor([[1.0, 2.0, 30.0, 40.0, 0.9, 1.0], [5.0, 6.0, 7.0, 8.0, 0.3, 7.0]])
    answer = detections_json(det, ["a", "b"], (50, 60, 3))
    assert answer["width"] == 60 and answer["height"] == 50
    assert [d["class"] for d in answer["detections"]] == [1, 7]
    assert [d["name"] for d in answer["detections"]] == ["b", "7"]  # an id without a name is its number
    assert answer["detections"][0]["box"] == [1.0, 2.0, 30.0, 40.0]
    assert answer["detections"][0]["confidence"] == pytest.approx(0.9)


@pytest.mark.slow
def test_a_bad_upload_in_a_batch_spoils_only_its_own_answer(shared: Path) -> None:
    pytest.importorskip("litserve")
    import base64

    from lightning_yolo.serve.api import DetectionAPI

    weights, bus = shared / "weights" / "yolov5n.pt", shared / "images" / "bus.jpg"
    api = DetectionAPI(weights, PredictSettings(imgsz=320), max_batch_size=4)
    api.setup("cpu")
    good = {"image": base64.b64encode(bus.read_bytes()).decode()}
    bad = {"image": base64.b64encode(b"not a picture").decode()}
    uploads = api.batch([api.decode_request(r) for r in (good, bad, good)])
    answers = [api.encode_response(a) for a in api.unbatch(api.predict(uploads))]
    assert answers[1].status_code == 422 and b"not an image" in answers[1].body
    reference = Predictor(load_detector(weights), PredictSettings(imgsz=320))([cv2.imread(str(bus))])[0]
    expected = detections_json(reference, api.names, (1080, 810))
    single = api.encode_response(api.predict(api.decode_request(good)))  # max_batch_size 1: no list
    for answer in (answers[0], answers[2], single):
        _assert_close(answer, expected)


def _assert_close(answer: dict, expected: dict) -> None:
    """Equal but for the last bits of the confidences (a batch of two and one picture round differently)."""
    assert (answer["width"], answer["height"]) == (expected["width"], expected["height"])
    assert len(answer["detections"]) == len(expected["detections"])
    for got, want in zip(answer["detections"], expected["detections"], strict=True):
        assert (got["class"], got["name"], got["box"]) == (want["class"], want["name"], want["box"])
        assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-5)


@pytest.fixture
def gated_client():  # noqa: ANN201 - a starlette TestClient
    pytest.importorskip("litserve")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from lightning_yolo.serve.gate import UploadGate

    async def echo(request):  # noqa: ANN001, ANN202
        return JSONResponse({"type": request.headers["content-type"], "body": await request.json()})

    async def other(request):  # noqa: ANN001, ANN202
        return JSONResponse({"size": len(await request.body())})

    routes = [Route("/predict", echo, methods=["POST"]), Route("/other", other, methods=["POST"])]
    gate = Middleware(UploadGate, path="/predict", max_image_bytes=3000)
    return TestClient(Starlette(routes=routes, middleware=[gate]))


@pytest.mark.parametrize("kind", ["raw", "form", "json"])
def test_the_gate_hands_the_route_one_json_form(gated_client, kind: str) -> None:  # noqa: ANN001
    body, content_type = envelope(kind, b"\x01\x02picture")
    answer = gated_client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 200
    assert answer.json() == {"type": "application/json", "body": {"image": "AQJwaWN0dXJl"}}


def test_the_gate_refuses_large_and_malformed_bodies(gated_client) -> None:  # noqa: ANN001
    assert gated_client.post("/predict", content=b"").status_code == 400
    too_large = gated_client.post("/predict", content=b"x" * 3001, headers={"Content-Type": "image/png"})
    assert too_large.status_code == 413 and "over the limit" in too_large.json()["detail"]
    over_body = gated_client.post("/predict", content=b"x" * 100_000)  # over the body limit: refused unread
    assert over_body.status_code == 413 and "request body" in over_body.json()["detail"]
    streamed = gated_client.post("/predict", content=iter([b"x" * 50_000] * 3))  # chunked: no declared length
    assert streamed.status_code == 413
    assert gated_client.post("/other", content=b"x" * 100_000).json() == {"size": 100_000}
