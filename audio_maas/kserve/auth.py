"""An optional bearer token on both protocols, for a service on a machine others can reach
(KServe binds every interface). In a cluster, authentication belongs to the mesh.

Liveness and readiness stay open: probes and ``audio-maas serve`` call them without
credentials, and they tell nothing but whether the server is up.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from pydantic import SecretStr

from audio_maas.kserve.asgi import ASGIApp, Receive, Scope, Send, send_error
from audio_maas.kserve.streaming import STREAM_METHOD
from audio_maas.protocol.defaults import AUTH_TOKEN_ENV
from audio_maas.protocol.errors import Unauthenticated

__all__ = ["BearerToken", "BearerTokenInterceptor", "bearer_header"]

_HEALTH_PATH = re.compile(r"^/$|^/v2/health/(live|ready)$|^/v2/models/[^/]+(/versions/[^/]+)?/ready$")
_HEALTH_RPCS = frozenset(
    f"/inference.GRPCInferenceService/{method}" for method in ("ServerLive", "ServerReady", "ModelReady")
)


def bearer_header(token: SecretStr | None) -> dict[str, str]:
    """The ``authorization`` header that carries ``token``; none without one."""
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


def _bearer_matches(authorization: str | bytes | None, *, token: bytes) -> bool:
    if authorization is None:
        return False
    value = authorization.encode() if isinstance(authorization, str) else authorization
    scheme, _, credentials = value.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)  # constant time


class BearerToken:
    """ASGI middleware: 401 unless the request carries the token, judged before the body is read."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self.token = token.get_secret_value().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _HEALTH_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope.get("headers") or []).get(b"authorization")
        if _bearer_matches(authorization, token=self.token):
            await self.app(scope, receive, send)
            return
        problem = "is wrong" if authorization is not None else "is missing"
        message = f"the bearer token {problem}: send 'Authorization: Bearer <{AUTH_TOKEN_ENV}>'"
        if scope["type"] == "websocket":  # refused before the handshake completes: the client sees 403
            await send({"type": "websocket.close", "code": 4000 + Unauthenticated.http_status, "reason": message})
            return
        await send_error(send, Unauthenticated.http_status, message, headers=[(b"www-authenticate", b"Bearer")])


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """The gRPC twin of :class:`BearerToken`: UNAUTHENTICATED unless metadata carries the token."""

    def __init__(self, token: SecretStr) -> None:
        self.token = token.get_secret_value().encode()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            message = f"the bearer token is missing or wrong: send metadata 'authorization: Bearer <{AUTH_TOKEN_ENV}>'"
            await context.abort(Unauthenticated.grpc_code, message)

        async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await refuse(None, context)
            yield  # never reached: an async generator, as a streaming method must be

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)
        self._stream_refusal = grpc.stream_stream_rpc_method_handler(refuse_stream)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = dict(handler_call_details.invocation_metadata or ())  # type: ignore[attr-defined]
        method = handler_call_details.method  # type: ignore[attr-defined]
        if method in _HEALTH_RPCS or _bearer_matches(metadata.get("authorization"), token=self.token):
            return await continuation(handler_call_details)
        return self._stream_refusal if method == STREAM_METHOD else self._refusal
