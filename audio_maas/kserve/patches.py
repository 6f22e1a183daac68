"""Every change we make to KServe's internals at run time, in one place. Written against KServe
``KSERVE_VERSION``; what the image builds rewrite in its files is ``audio_maas.images.slim_kserve``.

What each one fixes, seen from a client of the V2 protocol:

- :class:`DataPlane`: server ready only when every model is (KServe answers ready as soon as
  it listens); binary REST bodies keep their raw bytes (KServe re-decodes BYTES as UTF-8);
  every tensor's framing is checked before a model reads it; so are the outputs asked for; a
  request for another version is NOT_FOUND; metadata lists the version; JSON answers carry no ``null``.
- :class:`InferenceServicer`: an unknown datatype is refused in our words, as over REST.
- :class:`GRPCServer`: our servicer, Triton's ``ModelStreamInfer`` for models that stream
  (``audio_maas.kserve.streaming``), our error statuses (:class:`~audio_maas.kserve.errors.ErrorStatusInterceptor`)
  instead of KServe's, which answers INTERNAL to every error it does not know; the bearer
  token; the REST body limit as its receive limit, and no send limit, as REST has none (KServe's
  8 MiB failed the notes model's responses to 28 windows); no INFO line per call.
- :class:`ModelServer`: serves gRPC through :class:`GRPCServer`, and models from our
  repository (``audio_maas.kserve.repository``), so that KServe's load and unload routes use it.
- :func:`finish_app`: KServe registers its REST error handlers and its TimingMiddleware as the
  server starts, after our own; this replaces them once the app has started. It also puts KServe's
  V2 infer endpoint on a plain Starlette route ahead of FastAPI's, whose request handling cost
  a tenth of the transformer's CPU per clip.

``tests/test_kserve_patches.py`` fails when an upgrade moves what these rely on.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from kserve import InferRequest, InferResponse, model_server
from kserve import ModelServer as KServeModelServer
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, V2_ROUTE_PREFIX
from kserve.protocol.dataplane import DataPlane as KServeDataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer as KServeGRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer as KServeInferenceServicer
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from pydantic import SecretStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from timing_asgi import TimingMiddleware

from audio_maas.kserve.asgi import framework_error_response, malformed_request
from audio_maas.kserve.auth import BearerTokenInterceptor
from audio_maas.kserve.errors import ErrorStatusInterceptor
from audio_maas.kserve.metrics import RequestMetricsInterceptor
from audio_maas.kserve.openai import transcriptions_route
from audio_maas.kserve.repository import ModelRepository, RepositoryExtension
from audio_maas.kserve.streaming import StreamSlots, stream_handler, websocket_route
from audio_maas.kserve.tensors import check_request, parse_rest_request
from audio_maas.protocol.codec import dtype_of
from audio_maas.protocol.errors import BadRequest, ModelNotFound

__all__ = [
    "DataPlane",
    "GRPCServer",
    "InferenceServicer",
    "ModelServer",
    "finish_app",
]


log = logging.getLogger(__name__)


class DataPlane(KServeDataPlane):
    """KServe's data plane, telling the truth about readiness and checking what clients send."""

    def __init__(self, *, model_version: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version

    async def ready(self) -> bool:
        """Server ready (REST ``/v2/health/ready``, gRPC ``ServerReady``) means every model is,
        as the protocol says; KServe's answers True as soon as the server listens."""
        names = list(self._model_registry.get_models())
        return bool(names) and all([await self._model_registry.is_model_ready(name) for name in names])

    async def infer(
        self, model_name: str, request: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> tuple[dict[str, Any] | InferResponse, dict[str, str]]:
        if isinstance(request, InferRequest):
            if request.model_version and request.model_version != self.model_version:  # gRPC names it in the body
                raise ModelNotFound(
                    f"model '{model_name}' has no version '{request.model_version}'; "
                    f"this server has version '{self.model_version}'"
                )
            check_request(request)
            self._check_requested_outputs(model_name, request)
        return await super().infer(model_name, request, headers)

    def _check_requested_outputs(self, model_name: str, request: InferRequest) -> None:
        """A requested output the model does not have is the client's mistake on both protocols:
        KServe refuses it only when it encodes a REST answer, and drops it silently over gRPC."""
        model = self._model_registry.get_model(model_name)
        requested = [output.name for output in request.request_outputs or []]
        if model is None or not requested:
            return  # KServe answers an unknown model itself
        known = [output["name"] for output in model.get_output_types()]
        unknown = [name for name in requested if name not in known]
        if unknown:
            raise BadRequest(f"model '{model_name}' has no output {unknown[0]!r}; its outputs are {', '.join(known)}")

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


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


class InferenceServicer(KServeInferenceServicer):
    """KServe's gRPC servicer, refusing an unknown datatype as REST does: KServe's conversion of
    the request answers it with its own "invalid content type", naming neither input nor type."""

    @classmethod
    def validate_grpc_request(cls, request: pb.ModelInferRequest) -> None:
        super().validate_grpc_request(request)
        for tensor in request.inputs:
            dtype_of(name=tensor.name, datatype=tensor.datatype)


class GRPCServer(KServeGRPCServer):
    """KServe's gRPC server with our interceptors (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        auth_token: SecretStr | None,
        max_receive_bytes: int,
        stream_slots: StreamSlots | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_receive_bytes = max_receive_bytes
        self._stream_slots = stream_slots
        self._interceptors: list[grpc.aio.ServerInterceptor] = [ErrorStatusInterceptor()]
        if auth_token is not None:
            self._interceptors.insert(0, BearerTokenInterceptor(auth_token))
        self._interceptors.insert(0, RequestMetricsInterceptor())  # outermost: refusals count too

    async def start(self, max_workers: int) -> None:
        self._server = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=self._interceptors,
            options=[
                # An answer is bounded by the request the receive limit let in, times what the
                # model makes of each row (basic-pitch: 1.7 floats out per float in).
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", self._max_receive_bytes),  # the REST body limit
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        if self._stream_slots is not None:
            self._server.add_generic_rpc_handlers([stream_handler(self._stream_slots)])
        self._server.add_insecure_port(f"[::]:{self._port}")
        log.info("gRPC server on [::]:%d", self._port)
        await self._server.start()
        await self._server.wait_for_termination()


class ModelServer(KServeModelServer):
    """KServe's ModelServer serving gRPC through :class:`GRPCServer`, and its models from our
    repository, whose load and unload KServe's routes and servicer call."""

    def __init__(
        self,
        *,
        repository: ModelRepository,
        serve_grpc: bool,
        auth_token: SecretStr | None,
        max_body_bytes: int,
        max_streams: int | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(enable_grpc=False, registered_models=repository, **kwargs)  # KServe's gRPC stays off
        self.model_repository_extension = RepositoryExtension(repository)  # read by start()
        self.serve_grpc = serve_grpc
        self.auth_token = auth_token
        self.max_body_bytes = max_body_bytes
        self.max_streams = max_streams

    def start(self, models: list[Any]) -> None:
        # The data plane is final now; a server of no streams (max_streams None) mounts no stream route.
        self.stream_slots = (
            None if self.max_streams is None else StreamSlots(self.dataplane, max_streams=self.max_streams)
        )
        if self.serve_grpc:  # started beside KServe's REST server, stopped by KServe's stop()
            self._grpc_server = GRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(model_server.args),
                grace_period=self.grace_period,
                auth_token=self.auth_token,
                max_receive_bytes=self.max_body_bytes,
                stream_slots=self.stream_slots,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        super().start(models)


def finish_app(app: FastAPI, *, server: ModelServer, keep_timing: bool, openai: bool = False) -> None:
    """Undo what KServe adds to ``app`` as its server starts, and route inference past FastAPI;
    call from a startup event.

    - Its error handlers: every error is ours to answer (``audio_maas.kserve.asgi.V2Errors``), but the
      framework's own, which keep the V2 body.
    - Its TimingMiddleware, unless ``keep_timing``: it only logs two timing lines per request,
      off unless latency logging is asked for, yet routes every request a second time to name
      it (docs/performance.md has what that costs).
    - ``POST /v2/models/NAME/infer`` goes to KServe's V2 endpoint, on ``server``'s data plane and
      repository, through :func:`_infer_route`, ahead of the FastAPI route KServe registers for it.
    - ``/v2/models/NAME/stream`` is a WebSocket of live streams (``audio_maas.kserve.streaming``).
    - With ``openai``, ``POST /v1/audio/transcriptions`` (``audio_maas.kserve.openai``).

    Starlette builds its middleware stack at the first call (the startup event itself), and
    builds it again, from what is set here, at the next.
    """
    app.exception_handlers = {
        RequestValidationError: framework_error_response,
        StarletteHTTPException: framework_error_response,
    }
    if not keep_timing:
        app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not TimingMiddleware]
    app.middleware_stack = None
    endpoints = V2Endpoints(server.dataplane, server.model_repository_extension)
    app.router.routes.insert(0, _infer_route(endpoints))
    if server.stream_slots is not None:
        app.router.routes.insert(1, websocket_route(server.stream_slots))
    if openai:
        app.router.routes.insert(1, transcriptions_route(server.dataplane))


def _infer_route(endpoints: V2Endpoints) -> Route:
    """KServe's V2 infer endpoint on a plain Starlette route, for every body it takes.

    FastAPI's route for it reads the body into ``InferenceRequest | bytes``, solves the endpoint's
    dependencies and records telemetry, on every request (docs/performance.md has what that
    costs). This route parses the body as FastAPI
    decides it (JSON when the content type is JSON, else the bytes of a binary request) with the
    same pydantic model. A body that fails it is named as FastAPI named it, less the union: for ``{}``,
    "body.inputs: Field required" instead of "body.InferenceRequest.inputs: Field required;
    body.bytes: Input should be a valid bytes".
    """

    async def infer(request: Request) -> Response:
        body: InferenceRequest | bytes = await request.body()
        if _is_json(request.headers.get("content-type")):
            try:
                body = InferenceRequest.model_validate_json(body)
            except ValidationError as error:
                problems = [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
                raise BadRequest(malformed_request(problems)) from None
        # KServe's endpoint writes its response into the response FastAPI would have made for it,
        # whose Content-Length was set while its body was empty.
        response = await endpoints.infer(request, Response(), request.path_params["model_name"], body)
        assert isinstance(response, Response), "DataPlane.encode gives KServe's endpoint bytes to answer"
        response.headers["content-length"] = str(len(response.body))
        return response

    return Route(f"{V2_ROUTE_PREFIX}/models/{{model_name}}/infer", infer, methods=["POST"])


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI (strict about content types, as by default) would read a body of
    ``content_type`` as JSON: ``application/json`` and ``application/*+json``, with any
    parameters; a body without one is bytes, as Triton's client sends binary requests."""
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
