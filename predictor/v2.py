"""Open Inference Protocol (V2) plumbing that KServe 0.21 lacks, shared by both servers.

- Errors mapped once: :class:`ServiceError` carries its HTTP status; one handler renders the V2
  body ``{"error": "..."}``. FastAPI's own 422 for a malformed body becomes a V2 400 too.
- Binary tensor data: KServe's ``InferRequest.from_bytes`` turns every binary input into a
  JSON list, which fails with a 500 for BYTES that are not UTF-8 (audio files never are) and
  costs a Python list per float for FP32. :func:`parse_rest_request` keeps the raw bytes.
- A request-body limit enforced before the body is read: 413.
- An optional bearer token on both protocols, for a service on a machine others can reach
  (KServe binds every interface). In a cluster, authentication belongs to the mesh.
- Logs that say what happened once: no timing lines per request (KServe's TimingMiddleware is
  dropped unless ``--enable_latency_logging``) nor per gRPC call, and no traceback for a
  readiness probe answered 503 or a predictor call we answer for ourselves.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gc
import hmac
import logging
import re
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent import futures
from http import HTTPStatus
from typing import Any, TypeVar

import grpc
import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from kserve import InferInput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve import logging as kserve_logging
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import RequestedOutput
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings
from starlette.exceptions import HTTPException as StarletteHTTPException
from timing_asgi import TimingMiddleware

from predictor.contract import AUTH_TOKEN_ENV

__all__ = [
    "BadRequest",
    "PayloadTooLarge",
    "ServerSettings",
    "ServiceError",
    "UpstreamUnavailable",
    "bearer_header",
    "bytes_elements",
    "configure_logs",
    "parse_flags",
    "parse_rest_request",
    "start_server",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
SettingsT = TypeVar("SettingsT", bound=BaseSettings)

log = logging.getLogger(__name__)

_HEALTH_PATH = re.compile(r"^/$|^/v2/health/(live|ready)$|^/v2/models/[^/]+(/versions/[^/]+)?/ready$")
_HEALTH_RPCS = frozenset(
    f"/inference.GRPCInferenceService/{method}" for method in ("ServerLive", "ServerReady", "ModelReady")
)
"""Liveness and readiness stay open: probes and ``audio-maas serve`` call them without credentials,
and they tell nothing but whether the server is up."""


class ServerSettings(BaseSettings):
    """What both servers are configured with alike; each subclass adds its own env prefix."""

    model_version: str = Field(default="1", pattern=r"^[A-Za-z0-9._-]+$")
    """The model version served, as metadata and ``/v2/models/NAME/versions/VERSION/...`` name it."""
    max_body_bytes: int = Field(default=32 * 2**20, ge=1024)
    """Largest request body (bytes); larger is answered 413 before it is read."""
    auth_token: SecretStr | None = Field(default=None, validation_alias=AUTH_TOKEN_ENV)
    """Bearer token that every request except health checks must carry (``Authorization: Bearer
    TOKEN``; gRPC metadata ``authorization``). Read from ``AUDIO_MAAS_AUTH_TOKEN`` only, never from
    a flag, which any user of the machine could read in ``ps``."""


class ServiceError(Exception):
    """An error whose message the client should read, answered with ``status_code``."""

    status_code = HTTPStatus.INTERNAL_SERVER_ERROR


class BadRequest(ServiceError):
    status_code = HTTPStatus.BAD_REQUEST


class PayloadTooLarge(ServiceError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UpstreamUnavailable(ServiceError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


def bearer_header(token: SecretStr | None) -> dict[str, str]:
    """The ``authorization`` header that carries ``token``; none without one."""
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


def _bearer_matches(authorization: str | bytes | None, *, token: bytes) -> bool:
    if authorization is None:
        return False
    value = authorization.encode() if isinstance(authorization, str) else authorization
    scheme, _, credentials = value.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)  # constant time


async def _service_error_handler(_: Request, error: Exception) -> JSONResponse:
    status = error.status_code if isinstance(error, ServiceError) else HTTPStatus.INTERNAL_SERVER_ERROR
    return JSONResponse(status_code=status, content={"error": str(error)})


async def _validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    """FastAPI answers a body that fails its schema with 422 ``{"detail": [...]}``; V2 wants 400."""
    details = error.errors() if isinstance(error, RequestValidationError) else []
    problems = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg', '')}" for d in details)
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": f"malformed request: {problems}"})


async def _http_error_handler(_: Request, error: Exception) -> JSONResponse:
    """Starlette's own errors (an unparsable body, an unknown route) answer ``{"detail"}``; V2 says ``{"error"}``."""
    status = error.status_code if isinstance(error, StarletteHTTPException) else HTTPStatus.INTERNAL_SERVER_ERROR
    detail = error.detail if isinstance(error, StarletteHTTPException) else str(error)
    headers = getattr(error, "headers", None)
    return JSONResponse(status_code=status, content={"error": str(detail)}, headers=headers)


def parse_rest_request(body: bytes, *, json_length: int, model_name: str) -> InferRequest:
    """A V2 REST request with the binary tensor extension -> ``InferRequest``.

    ``body`` is ``json_length`` bytes of JSON followed by each binary input's bytes, in input
    order. Binary inputs keep their raw bytes (BYTES tensors stay bytes).
    """
    if not 0 < json_length <= len(body):
        raise BadRequest(f"{INFERENCE_CONTENT_LENGTH_HEADER} is {json_length} but the body has {len(body)} bytes")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request JSON is malformed: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("request JSON must be an object with an 'inputs' list")
    inputs: list[InferInput] = []
    raw_inputs: list[bytes | None] = []
    offset = json_length
    for position, item in enumerate(header["inputs"]):
        if not isinstance(item, dict) or not {"name", "shape", "datatype"} <= item.keys():
            raise BadRequest(f"input {position} must have 'name', 'shape' and 'datatype'")
        parameters = item.get("parameters") or {}
        infer_input = InferInput(
            name=item["name"], shape=item["shape"], datatype=item["datatype"], parameters=parameters or None
        )
        size = parameters.get("binary_data_size")
        if "data" in item:
            infer_input.data = item["data"]
            raw_inputs.append(None)
        elif isinstance(size, int) and size >= 0:
            if offset + size > len(body):
                raise BadRequest(
                    f"input '{item['name']}' declares {size} binary bytes but only {len(body) - offset} follow"
                )
            raw_inputs.append(body[offset : offset + size])
            offset += size
        else:
            raise BadRequest(f"input '{item['name']}' has neither 'data' nor a binary_data_size parameter")
        inputs.append(infer_input)
    if offset != len(body):
        raise BadRequest(f"{len(body) - offset} bytes follow the binary inputs that no input declares")
    request = InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=header.get("id"),
        parameters=header.get("parameters"),
        request_outputs=[
            RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in header.get("outputs") or []
        ],
    )
    for infer_input, raw in zip(request.inputs, raw_inputs, strict=True):
        infer_input._raw_data = raw  # what InferRequest(raw_inputs=...) does, for only some inputs
    return request


def bytes_elements(infer_input: InferInput) -> list[bytes]:
    """The elements of a BYTES tensor as bytes.

    Binary tensor data carries raw bytes; JSON carries strings, which for binary content must be
    base64 (JSON has no bytes type), so JSON strings are base64-decoded.
    """
    if infer_input.datatype != "BYTES":
        raise BadRequest(f"input '{infer_input.name}' must be BYTES, got {infer_input.datatype}")
    if infer_input._raw_data is not None or infer_input.data is None:  # binary or gRPC raw contents
        return [bytes(element) for element in np.asarray(infer_input.as_numpy(), dtype=object).reshape(-1)]
    elements = []
    for index, element in enumerate(_flatten(infer_input.data)):
        if isinstance(element, (bytes, bytearray)):  # gRPC bytes_contents
            elements.append(bytes(element))
            continue
        try:
            elements.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise BadRequest(
                f"input '{infer_input.name}' element {index} is not base64: send binary data, or base64 in JSON"
            ) from None
    return elements


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [element for item in data for element in _flatten(item)]
    return [data]


class _DataPlane(DataPlane):
    """KServe's data plane, keeping binary request bytes and naming the one model version served."""

    def __init__(self, *, model_version: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = dict(await super().model_metadata(model_name))
        metadata["versions"] = [self.model_version]  # KServe leaves it null; the spec wants a list
        return metadata

    def encode(self, model_name: str, response: Any, headers: Any, req_attributes: dict[str, Any]) -> Any:
        """Answers name the version that served them, and JSON answers carry no ``null``: KServe's
        endpoint re-validates a JSON dict into a model whose unset optional fields serialise as
        ``null``, which the protocol's schema does not allow; bytes it passes through as they are."""
        if isinstance(response, InferResponse) and response.model_version is None:
            response.model_version = self.model_version
        encoded, response_headers = super().encode(model_name, response, headers, req_attributes)
        if isinstance(encoded, dict):
            encoded = orjson.dumps(_without_nulls(encoded))
        return encoded, response_headers

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER.lower(), headers.get(INFERENCE_CONTENT_LENGTH_HEADER))
        if length is None:
            raise BadRequest(f"a binary request needs the {INFERENCE_CONTENT_LENGTH_HEADER} header")
        try:
            json_length = int(length)
        except ValueError:
            raise BadRequest(f"{INFERENCE_CONTENT_LENGTH_HEADER} must be an integer, got {length!r}") from None
        return parse_rest_request(body, json_length=json_length, model_name=model_name)


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, judged before the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # chunked bodies have no Content-Length to judge by
                raise PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)

    async def _too_large(self, send: Send) -> None:
        message = f"request body is over the limit of {self.max_bytes} bytes"
        await _send_error(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)


class _ModelVersions:
    """ASGI middleware: ``/v2/models/NAME/versions/VERSION[/ready|/infer]`` answers as the
    unversioned path when VERSION is the one served, and 404 naming it otherwise. KServe 0.21
    answers 501 to any version, though the protocol's paths all carry one."""

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
                await _send_error(send, HTTPStatus.NOT_FOUND, message)
                return
            path = f"/v2/models/{name}{rest or ''}"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


class _InferContentType:
    """ASGI middleware: KServe's infer endpoint answers without a Content-Type; name the one the
    protocol gives: JSON, or octet-stream when binary tensor data follows the JSON."""

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


class _BearerToken:
    """ASGI middleware: 401 unless the request carries the bearer token, judged before the body is
    read. Health checks stay open (see ``_HEALTH_PATH``)."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self.token = token.get_secret_value().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _HEALTH_PATH.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope.get("headers") or []).get(b"authorization")
        if _bearer_matches(authorization, token=self.token):
            await self.app(scope, receive, send)
            return
        problem = "is wrong" if authorization is not None else "is missing"
        message = f"the bearer token {problem}: send 'Authorization: Bearer <{AUTH_TOKEN_ENV}>'"
        await _send_error(send, HTTPStatus.UNAUTHORIZED, message, headers=[(b"www-authenticate", b"Bearer")])


class _BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """The gRPC twin of :class:`_BearerToken`: UNAUTHENTICATED unless metadata carries the token."""

    def __init__(self, token: SecretStr) -> None:
        self.token = token.get_secret_value().encode()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            message = f"the bearer token is missing or wrong: send metadata 'authorization: Bearer <{AUTH_TOKEN_ENV}>'"
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = dict(handler_call_details.invocation_metadata or ())  # type: ignore[attr-defined]
        method = handler_call_details.method  # type: ignore[attr-defined]
        if method in _HEALTH_RPCS or _bearer_matches(metadata.get("authorization"), token=self.token):
            return await continuation(handler_call_details)
        return self._refusal


class _GRPCServer(GRPCServer):
    """KServe's gRPC server with our interceptors: the bearer token when one is set, and KServe's
    error mapping, without its LoggingInterceptor's INFO line per call."""

    def __init__(self, *args: Any, auth_token: SecretStr | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._interceptors: list[grpc.aio.ServerInterceptor] = [ExceptionToStatusInterceptor()]
        if auth_token is not None:
            self._interceptors.insert(0, _BearerTokenInterceptor(auth_token))

    async def start(self, max_workers: int) -> None:
        self._server = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=self._interceptors,
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        log.info("gRPC server on [::]:%d", self._port)
        await self._server.start()
        await self._server.wait_for_termination()


class _ModelServer(ModelServer):
    """KServe's ModelServer serving gRPC through :class:`_GRPCServer`."""

    def __init__(self, *, serve_grpc: bool, auth_token: SecretStr | None, **kwargs: Any) -> None:
        super().__init__(enable_grpc=False, **kwargs)  # KServe's own gRPC server stays off
        self.serve_grpc = serve_grpc
        self.auth_token = auth_token

    def start(self, models: list[Any]) -> None:
        if self.serve_grpc:  # started beside KServe's REST server, stopped by KServe's stop()
            self._grpc_server = _GRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(model_server.args),
                grace_period=self.grace_period,
                auth_token=self.auth_token,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        super().start(models)


class _AnsweredErrors(logging.Filter):
    """Drops KServe's ERROR tracebacks for what is answered and reported without them: a readiness
    probe before the model is ready (its answer is the 503) and a failed predictor call (the
    transformer answers 503 naming the reason, and the batcher logs it once per batch)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (ModelNotReady, grpc.RpcError))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


async def _send_error(
    send: Send, status: HTTPStatus, message: str, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A V2 error answer from ASGI middleware, which runs outside FastAPI's exception handlers."""
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def start_server(model: Model, *, args: argparse.Namespace, settings: ServerSettings) -> None:
    """Run KServe's ModelServer for ``model`` (already loaded) with the fixes above.

    ``args`` come from :func:`parse_flags` and logs were set by :func:`configure_logs`; KServe
    reads its other flags from the command line itself.
    """
    app: FastAPI = model_server.app
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_InferContentType)
    app.add_middleware(_ModelVersions, version=settings.model_version)
    if settings.auth_token is not None:
        app.add_middleware(_BearerToken, token=settings.auth_token)  # outermost: before anything is read
    if not args.enable_latency_logging:
        app.router.add_event_handler("startup", _drop_timing_middleware)
    # What is loaded by now (TensorFlow's graph, librosa, KServe) lives as long as the process:
    # freezing it keeps it out of every later full garbage collection, which would otherwise
    # walk it all and stall requests for tens of milliseconds.
    gc.collect()
    gc.freeze()
    server = _ModelServer(
        serve_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        auth_token=settings.auth_token,
    )
    if settings.auth_token is not None:
        log.info("every request but health checks needs the bearer token in %s", AUTH_TOKEN_ENV)
    server.dataplane = _DataPlane(model_registry=server.registered_models, model_version=settings.model_version)
    server.start([model])


async def _drop_timing_middleware() -> None:
    """KServe's TimingMiddleware only logs two timing lines per request, off unless latency logging
    is asked for, yet routes every request a second time to name it: 8% of clips/s at concurrency
    32 here. KServe adds it as the server starts; Starlette builds its middleware stack at the
    first call (this startup event), and builds it again, without it, at the next."""
    app: FastAPI = model_server.app
    app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not TimingMiddleware]
    app.middleware_stack = None


def configure_logs(args: argparse.Namespace) -> None:
    """Logging as KServe's flags say, set before the model loads so that what ``load()`` logs (the
    device, the tensors) is seen. Our modules log like KServe's own: its handler, its level
    (KSERVE_LOGLEVEL). Nothing we log carries audio, tensor values or the token, at any level."""
    if args.configure_logging:  # ModelServer would do it later, after load(); it skips a configured logger
        kserve_logging.configure_logging(args.log_config_file)
    kserve_log = logging.getLogger("kserve")
    for package in ("predictor", "transformer"):
        ours = logging.getLogger(package)
        ours.setLevel(kserve_log.level)
        ours.handlers = list(kserve_log.handlers)
        ours.propagate = False
    trace_log = logging.getLogger("kserve.trace")
    for logger in (kserve_log, trace_log):
        logger.addFilter(_AnsweredErrors())
    # FastAPI 0.165 deprecates the ORJSONResponse that KServe 0.21's app answers with, and says
    # so on each server's first request: a note on KServe's code that no user of ours can act on.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated", category=UserWarning)


def parse_flags(
    settings_class: type[SettingsT], *, description: str | None, argv: list[str] | None
) -> tuple[argparse.Namespace, SettingsT]:
    """KServe's own flags plus ``--<field>`` for each settings field, which wins over its
    environment variable. Invalid values fail here, naming the setting (pydantic)."""
    parser = argparse.ArgumentParser(parents=[model_server.parser], description=description)
    # KServe logs three lines of timings per request by default; /metrics has the same figures.
    parser.set_defaults(enable_latency_logging=False)
    for name, field in settings_class.model_fields.items():
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS if field.validation_alias else field.description)
    args, _ = parser.parse_known_args(argv)
    flags = {name: getattr(args, name) for name in settings_class.model_fields if getattr(args, name) is not None}
    for name, field in settings_class.model_fields.items():
        if field.validation_alias and name in flags:  # a secret: every user of the machine can read flags in `ps`
            parser.error(f"--{name} is not accepted on the command line; set {field.validation_alias} instead")
    return args, settings_class(**flags)
