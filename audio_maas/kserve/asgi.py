"""ASGI middleware both REST servers run, and the one V2 error body they all answer with.

Every error answers ``{"error": "..."}``: an exception raised while answering a request is
classified by :func:`audio_maas.kserve.errors.classify` in :class:`V2Errors`; FastAPI's own errors (a
body that fails its schema, an unknown route) by :func:`framework_error_response`; middleware
that refuses a request before the app sees it writes its response with :func:`send_error`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import Response
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from starlette.exceptions import HTTPException as StarletteHTTPException

from audio_maas.kserve.errors import classify
from audio_maas.protocol.errors import ModelNotFound, PayloadTooLarge

__all__ = [
    "ASGIApp",
    "BodyLimit",
    "InferContentType",
    "ModelVersions",
    "V2Errors",
    "framework_error_response",
    "malformed_request",
    "send_error",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)


_JSON = "application/json"


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def send_error(
    send: Send, status: HTTPStatus, message: str, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A V2 error answer written by middleware."""
    body = _error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def malformed_request(errors: Iterable[Mapping[str, Any]]) -> str:
    """The message for a body that fails its schema, from pydantic's list of errors."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
    return f"malformed request: {problems}"


async def framework_error_response(_: Request, error: Exception) -> Response:
    """FastAPI's own errors in V2's form: a body that fails its schema is 422 ``{"detail"}``
    there and 400 here; an unparsable body or an unknown route keeps its status."""
    if isinstance(error, RequestValidationError):
        return Response(_error_body(malformed_request(error.errors())), HTTPStatus.BAD_REQUEST, media_type=_JSON)
    assert isinstance(error, StarletteHTTPException), "registered for these two classes only"
    return Response(_error_body(str(error.detail)), error.status_code, headers=error.headers, media_type=_JSON)


class V2Errors:
    """Innermost middleware: every exception raised answering a request is answered here, with
    the statuses of :func:`audio_maas.kserve.errors.classify`, and not raised further.

    Starlette's outermost ``ServerErrorMiddleware`` would answer an exception and then raise it
    again to the server, and uvicorn closes the connection: the client's next request on it is
    lost. Here it stops; only a fault of the server's own is logged with its traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if started:  # too late for another answer: let the server close the connection
                raise
            status = classify(error)
            if not status.expected:
                log.error("error answering %s", scope["path"], exc_info=error)
            await send_error(send, status.http_status, status.message)


class BodyLimit:
    """413 for a body over ``max_bytes``, judged before the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body is over the limit of {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, PayloadTooLarge.http_status, message)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > self.max_bytes:  # chunked bodies have no Content-Length to judge by
                raise PayloadTooLarge(message)
            return chunk

        await self.app(scope, counting_receive, send)


class ModelVersions:
    """``/v2/models/NAME/versions/VERSION[/ready|/infer]`` answers as the unversioned path when
    VERSION is the one served, and 404 naming it otherwise. KServe 0.21 answers 501 to any
    version, though the protocol's paths all carry one."""

    PATH = re.compile(r"^/v2/models/([^/]+)/versions/([^/]+)(/ready|/infer)?/?$")

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is not None:
            name, version, rest = match.groups()
            if version != self.version:
                message = f"model '{name}' has no version '{version}'; this server has version '{self.version}'"
                await send_error(send, ModelNotFound.http_status, message)
                return
            path = f"/v2/models/{name}{rest or ''}"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


class InferContentType:
    """KServe's infer endpoint answers without a Content-Type; name the one the protocol gives:
    JSON, or octet-stream when binary tensor data follows the JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/infer"):
            await self.app(scope, receive, send)
            return

        async def typed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                if b"content-type" not in names:
                    binary = INFERENCE_CONTENT_LENGTH_HEADER.lower().encode() in names
                    headers.append((b"content-type", b"application/octet-stream" if binary else b"application/json"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, typed_send)
