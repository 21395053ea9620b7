"""The ASGI middleware in front of the detection route: reads the body within a size limit, finds the image in
it (:mod:`lightning_yolo.serve.payload`) and hands the route one form, ``{"image": "<base64>"}``.

Malformed requests are answered here, with a 4xx and ``{"detail": reason}`` (FastAPI's error shape), and never
reach the inference workers. A body over the limit is refused as soon as its declared length (or, without one, the
bytes received so far) passes it, without reading the rest.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lightning_yolo.serve.payload import FIELD, PayloadError, body_limit, image_bytes

__all__ = ["UploadGate"]


class UploadGate:
    """Guards ``POST path``; every other request passes through untouched.

    Args:
        app: the application behind it.
        path: the detection route.
        max_image_bytes: the largest image accepted.
    """

    def __init__(self, app: ASGIApp, *, path: str, max_image_bytes: int) -> None:
        self.app = app
        self.path = path
        self.max_image_bytes = max_image_bytes
        self.max_body = body_limit(max_image_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(headers.get("content-length"), receive)
            data = await run_in_threadpool(image_bytes, headers.get("content-type", ""), body, self.max_image_bytes)
        except PayloadError as err:
            await JSONResponse({"detail": err.detail}, status_code=err.status)(scope, receive, send)
            return
        canonical = json.dumps({FIELD: base64.b64encode(data).decode("ascii")}).encode()
        await self.app(_json_scope(scope, len(canonical)), _replay(canonical, receive), send)

    async def _read_body(self, declared: str | None, receive: Receive) -> bytes:
        """The whole body, refusing (413) one declared or found to be over the limit."""
        if declared is not None:
            if not declared.isdigit():
                raise PayloadError(400, f"bad Content-Length {declared!r}")
            if int(declared) > self.max_body:
                raise PayloadError(413, self._too_large(int(declared)))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise PayloadError(400, "the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadError(413, self._too_large(size))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.max_body} bytes (--max-image-mb)"


def _json_scope(scope: Scope, length: int) -> dict[str, Any]:
    """``scope`` with the headers of a JSON body of ``length`` bytes."""
    dropped = (b"content-type", b"content-length", b"transfer-encoding", b"content-encoding")
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in dropped]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits on the client (for its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
