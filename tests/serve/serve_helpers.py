"""Request bodies for the serve tests: the three envelopes an image can travel in."""

from __future__ import annotations

import base64
import json

BOUNDARY = "lightning-yolo-test-boundary"


def multipart(data: bytes, field: str = "image", filename: str = "picture.jpg") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file field, and its content type."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def json_body(data: bytes, field: str = "image") -> tuple[bytes, str]:
    """A JSON body ``{field: base64(data)}`` and its content type."""
    return json.dumps({field: base64.b64encode(data).decode()}).encode(), "application/json"


def envelope(kind: str, data: bytes) -> tuple[bytes, str]:
    """``data`` as a raw body (``raw``), a form field (``form``) or JSON (``json``), with its content type."""
    if kind == "form":
        return multipart(data)
    if kind == "json":
        return json_body(data)
    return data, "image/jpeg"
