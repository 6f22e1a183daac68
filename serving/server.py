"""Start a KServe server for our models: the wiring both ``__main__`` modules share."""

from __future__ import annotations

import argparse
import gc
import logging

from fastapi import FastAPI
from kserve import Model, model_server

from serving.asgi import BodyLimit, InferContentType, ModelVersions, V2Errors
from serving.auth import BearerToken
from serving.contract import AUTH_TOKEN_ENV
from serving.kserve_patches import DataPlane, ModelServer, finish_app
from serving.metrics import MODEL_READY, RequestMetrics
from serving.repository import ModelRepository, add_index_route
from serving.settings import ServerSettings

__all__ = ["start_server"]

log = logging.getLogger(__name__)


def start_server(
    models: list[Model], *, repository: ModelRepository, args: argparse.Namespace, settings: ServerSettings
) -> None:
    """Run KServe's ModelServer for ``models`` (already loaded) with our middleware and patches;
    ``repository`` holds them, and loads and unloads others by name while they serve.

    ``args`` come from :func:`serving.settings.parse_flags` and logs were set by
    :func:`serving.logs.configure_logs`; KServe reads its other flags from the command line itself.
    """
    app: FastAPI = model_server.app
    # add_middleware puts each one outside the ones before it: V2Errors innermost, the token outermost.
    app.add_middleware(V2Errors)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(InferContentType)
    app.add_middleware(ModelVersions, version=settings.model_version)
    if settings.auth_token is not None:
        app.add_middleware(BearerToken, token=settings.auth_token)  # before anything is read
        log.info("every request but health checks needs the bearer token in %s", AUTH_TOKEN_ENV)
    app.add_middleware(RequestMetrics)  # outermost: refusals count too
    MODEL_READY.watch(repository)

    async def on_startup() -> None:
        finish_app(app, server=server, keep_timing=args.enable_latency_logging)

    app.router.add_event_handler("startup", on_startup)
    # What is loaded by now (TensorFlow's graph, librosa, KServe) lives as long as the process:
    # freezing it keeps it out of every later full garbage collection, which would otherwise
    # walk it all and stall requests for tens of milliseconds. Both __main__ modules turn the
    # collector off until here: during start-up it only walked that growing heap again and again
    # (0.3-0.4 s of the predictor's 2.8 s of imports here), and a collection before freezing would
    # cost 0.2-0.5 s to find 1-2 MB of garbage, which stays instead.
    gc.freeze()
    gc.enable()
    server = ModelServer(
        repository=repository,
        serve_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        auth_token=settings.auth_token,
        max_body_bytes=settings.max_body_bytes,
    )
    server.dataplane = DataPlane(model_registry=server.registered_models, model_version=settings.model_version)
    add_index_route(app, server.model_repository_extension)
    server.start(models)
