"""The envelope of a request to the ``serve`` endpoint: where the image's bytes are in the body.

Three forms are accepted: the image file's bytes as the body (any content type but JSON and form data), a
``multipart/form-data`` body with the file in a field named ``image`` (what ``curl -F image=@bus.jpg`` sends), and a
JSON object ``{"image": "<base64 of the file>"}``. Only the envelope is checked here; whether the bytes are a usable
picture is decided by :mod:`lightning_yolo.serve.uploads`.
"""

from __future__ import annotations

import base64
import binascii
import json
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP

__all__ = ["FIELD", "PayloadError", "body_limit", "image_bytes"]

FIELD = "image"
"""The JSON key and the form field that hold the image."""

_ENVELOPE_SLACK = 64 * 1024  # form headers, JSON punctuation


class PayloadError(Exception):
    """A request the endpoint refuses, with the HTTP status to answer and a reason for the client.

    Attributes:
        status: 400 (malformed request), 413 (too large) or 422 (not a usable picture).
        detail: one sentence saying what is wrong.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def body_limit(max_image_bytes: int) -> int:
    """The largest body that can carry an image of ``max_image_bytes``: base64 in JSON makes it 4/3 larger."""
    return -(-max_image_bytes // 3) * 4 + _ENVELOPE_SLACK


def image_bytes(content_type: str, body: bytes, max_image_bytes: int) -> bytes:
    """The image file's bytes carried by a request body.

    Args:
        content_type: the request's ``Content-Type`` header ("" when absent).
        body: the whole body.
        max_image_bytes: the largest image accepted.

    Raises:
        PayloadError: an empty body or image, malformed JSON or form data, no ``image`` field, base64 that does
            not decode (400), or an image over ``max_image_bytes`` (413).
    """
    if not body:
        raise PayloadError(400, "empty request body: send an image file, form field 'image' or JSON {'image': base64}")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        data = _from_json(body)
    elif media_type == "multipart/form-data":
        data = _from_form(content_type, body)
    else:
        data = body
    if not data:
        raise PayloadError(400, f"the '{FIELD}' field is empty")
    if len(data) > max_image_bytes:
        raise PayloadError(413, f"image of {len(data)} bytes is over the limit of {max_image_bytes} bytes")
    return data


def _from_json(body: bytes) -> bytes:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PayloadError(400, f"malformed JSON: {err}") from None
    if not isinstance(payload, dict) or FIELD not in payload:
        keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise PayloadError(400, f"JSON must be an object with an '{FIELD}' field (base64 of the file); got {keys}")
    value = payload[FIELD]
    if not isinstance(value, str):
        raise PayloadError(400, f"'{FIELD}' must be a base64 string, not {type(value).__name__}")
    if value.startswith("data:") and "," in value:  # a data URL: data:image/jpeg;base64,....
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise PayloadError(400, f"'{FIELD}' is not valid base64: {err}") from None


def _from_form(content_type: str, body: bytes) -> bytes:
    """The ``image`` part of a multipart body (the standard library's MIME parser: no extra dependency)."""
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not message.is_multipart() or message.defects:
        raise PayloadError(400, "malformed multipart/form-data body")
    fields = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") if isinstance(part, EmailMessage) else None
        fields.append(str(name))
        if name == FIELD:
            return part.get_payload(decode=True) or b""
    raise PayloadError(400, f"form data has no '{FIELD}' field (fields: {', '.join(fields) or 'none'})")
