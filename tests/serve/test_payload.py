"""Finding the image in a request body: raw bytes, form data, JSON with base64; and refusing the rest."""

from __future__ import annotations

import base64
import json

import pytest
from serve_helpers import envelope, multipart

from lightning_yolo.serve.payload import PayloadError, body_limit, image_bytes

DATA = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"  # binary, with CR LF and dashes inside


@pytest.mark.parametrize("kind", ["raw", "form", "json"])
def test_each_envelope_gives_the_same_bytes(kind: str) -> None:
    body, content_type = envelope(kind, DATA)
    assert image_bytes(content_type, body, 1 << 20) == DATA


def test_json_accepts_a_data_url_and_a_json_suffix_type() -> None:
    body = json.dumps({"image": "data:image/jpeg;base64," + base64.b64encode(DATA).decode()}).encode()
    assert image_bytes("application/vnd.api+json; charset=utf-8", body, 1 << 20) == DATA


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        ("image/jpeg", b"", 400, "empty request body"),
        ("application/json", b'{"img": "aGVsbG8="}', 400, "'image' field"),
        ("application/json", b'["aGVsbG8="]', 400, "'image' field"),
        ("application/json", b'{"image": 5}', 400, "base64 string"),
        ("application/json", b'{"image": "@@not base64@@"}', 400, "not valid base64"),
        ("application/json", b'{"image": ""}', 400, "empty"),
        ("application/json", b"{not json", 400, "malformed JSON"),
        ("application/json", b"\xff\xfe\x00garbage", 400, "malformed JSON"),
        ("multipart/form-data; boundary=x", b"no parts here", 400, "multipart"),
    ],
)
def test_malformed_envelopes_are_400_with_a_reason(content_type: str, body: bytes, status: int, words: str) -> None:
    with pytest.raises(PayloadError) as err:
        image_bytes(content_type, body, 1 << 20)
    assert err.value.status == status and words in err.value.detail


def test_form_without_the_image_field_names_the_fields_it_has() -> None:
    body, content_type = multipart(DATA, field="file")
    with pytest.raises(PayloadError, match="no 'image' field.*file") as err:
        image_bytes(content_type, body, 1 << 20)
    assert err.value.status == 400


@pytest.mark.parametrize("kind", ["raw", "form", "json"])
def test_an_image_over_the_limit_is_413(kind: str) -> None:
    body, content_type = envelope(kind, DATA)
    with pytest.raises(PayloadError) as err:
        image_bytes(content_type, body, len(DATA) - 1)
    assert err.value.status == 413


def test_the_body_limit_leaves_room_for_base64_of_the_largest_image() -> None:
    body, _ = envelope("json", b"\xff" * 3000)
    assert len(body) <= body_limit(3000) < 3000 * 4 // 3 + 100_000
