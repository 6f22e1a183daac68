"""Request metrics both servers export at ``/metrics``: what the chart's alerts and dashboard read.

KServe's own histograms (``request_predict_seconds`` and its kin) time the model stages of the
requests that got that far. These count every inference request, REST and gRPC, refused ones
included, by outcome, and time each from its first byte to its response:

- ``audio_maas_requests_total{model, protocol, code, outcome}``: ``code`` is the HTTP status or
  the gRPC status name; ``outcome`` is ``ok``, ``client_error`` or ``server_error``, the same on
  both protocols, so that one error ratio covers both. ``model`` is ``-`` for a name the server
  does not serve: a client must not be able to grow the label set without bound;
- ``audio_maas_request_seconds{model, protocol}``: a histogram;
- ``audio_maas_model_ready{model}``: 1 while a model serves, 0 while it loads or failed to.

Live streams have theirs in ``audio_maas.serving.metrics``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["REQUESTS", "REQUEST_SECONDS", "ReadyCollector", "RequestMetrics", "RequestMetricsInterceptor"]

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

REQUESTS = Counter(
    "audio_maas_requests", "Inference requests answered, by outcome", ["model", "protocol", "code", "outcome"]
)
REQUEST_SECONDS = Histogram(
    "audio_maas_request_seconds",
    "Seconds from an inference request's arrival to its response",
    ["model", "protocol"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer/?$")
_INFER_RPC = "/inference.GRPCInferenceService/ModelInfer"
_CLIENT_CODES = {
    "CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "OUT_OF_RANGE", "UNAUTHENTICATED",
}  # fmt: skip
"""gRPC codes that blame the request, as 4xx statuses do; the others but OK blame the server."""


def _record(model: str, protocol: str, code: str, outcome: str, seconds: float) -> None:
    model = model if MODEL_READY.knows(model) else "-"
    REQUESTS.labels(model, protocol, code, outcome).inc()
    REQUEST_SECONDS.labels(model, protocol).observe(seconds)


class RequestMetrics:
    """Outermost REST middleware: counts and times every ``.../infer`` request by its status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        match = _INFER_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # an exception past every middleware answers 500

        async def status_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
            _record(match.group(1), "rest", str(status), outcome, time.perf_counter() - started)


class RequestMetricsInterceptor(grpc.aio.ServerInterceptor):
    """The gRPC twin of :class:`RequestMetrics`, outermost, so that refusals count too."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler_call_details.method != _INFER_RPC or handler is None or handler.unary_unary is None:  # type: ignore[attr-defined]
            return handler
        call = handler.unary_unary

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                return await call(request, context)
            finally:
                code = context.code()  # set by abort(); None when the handler returned
                name = "OK" if code is None else code.name if isinstance(code, grpc.StatusCode) else str(code)
                outcome = "ok" if name == "OK" else "client_error" if name in _CLIENT_CODES else "server_error"
                _record(request.model_name, "grpc", name, outcome, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class ReadyCollector(Collector):
    """``audio_maas_model_ready``, read from a model repository at each scrape."""

    def __init__(self) -> None:
        self._repositories: list[Any] = []

    def watch(self, repository: Any) -> None:
        """Report ``repository``'s models (a :class:`audio_maas.kserve.repository.ModelRepository`)."""
        self._repositories.append(repository)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a model a watched repository serves or is loading."""
        return any(repository.knows(name) for repository in self._repositories)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("audio_maas_model_ready", "1 while the model serves, else 0", labels=["model"])
        for repository in self._repositories:
            for name, ready in repository.readiness().items():
                family.add_metric([name], 1.0 if ready else 0.0)
        yield family


MODEL_READY = ReadyCollector()
REGISTRY.register(MODEL_READY)
