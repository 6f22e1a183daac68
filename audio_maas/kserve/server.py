"""Start a KServe server for our models: the one bootstrap both ``__main__`` modules call."""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI
from kserve import Model, model_server

from audio_maas.kserve.adapter import KServeModel
from audio_maas.kserve.asgi import BodyLimit, InferContentType, ModelVersions, V2Errors
from audio_maas.kserve.auth import BearerToken
from audio_maas.kserve.logs import configure_logs
from audio_maas.kserve.metrics import MODEL_READY, RequestMetrics
from audio_maas.kserve.patches import DataPlane, ModelServer, finish_app
from audio_maas.kserve.repository import ModelRepository, add_index_route
from audio_maas.kserve.settings import parse_flags
from audio_maas.protocol.defaults import AUTH_TOKEN_ENV
from audio_maas.serving.model import ServedModel
from audio_maas.serving.settings import ServerSettings

__all__ = ["Build", "Close", "run", "start_server"]

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServerSettings)


Build = Callable[[str, SettingsT], ServedModel]
"""(model name, the server's settings for its directory) -> the model, not loaded."""
Close = Callable[[str], Awaitable[None]]
"""Follows each unload by name (the transformer's predictor unloads the model too)."""


def run(
    settings_class: type[SettingsT],
    *,
    description: str | None,
    argv: list[str] | None,
    setup: Callable[[argparse.Namespace, SettingsT], tuple[Build[SettingsT], Close | None]],
    streams: bool = False,
    openai: bool = False,
) -> None:
    """Parse flags into ``settings_class``, set the logs, then ``setup(flags, settings)`` gives how
    this server builds a model and what follows an unload. Every model the settings name is built
    and loaded, then served; models in the repository can be loaded and unloaded by name meanwhile.
    With ``streams``, live streams are served too (``audio_maas.kserve.streaming``); with ``openai``,
    OpenAI's transcription API for the models that answer text (``audio_maas.kserve.openai``)."""
    args, settings = parse_flags(settings_class, description=description, argv=argv)
    configure_logs(args)
    build, close_model = setup(args, settings)

    def model_for(name: str, model_dir: Path) -> KServeModel:
        return KServeModel(build(name, settings.model_copy(update={"model_dir": model_dir})))

    async def open_model(name: str, model_dir: Path) -> Model:
        model = model_for(name, model_dir)
        await model.open()
        return model

    models = [model_for(name, model_dir) for name, model_dir in settings.served_models(args.model_name).items()]
    for model in models:
        model.load()  # logs what it loaded: the device, the tensors, the front end
    repository = ModelRepository(
        directories=lambda: settings.served_models(args.model_name),
        open_model=open_model,
        close_model=close_model,
        version=settings.model_version,
    )
    start_server(models, repository=repository, args=args, settings=settings, streams=streams, openai=openai)


def start_server(
    models: list[Model],
    *,
    repository: ModelRepository,
    args: argparse.Namespace,
    settings: ServerSettings,
    streams: bool,
    openai: bool = False,
) -> None:
    """Run KServe's ModelServer for ``models`` (already loaded) with our middleware and patches;
    ``repository`` holds them, and loads and unloads others by name while they serve.

    ``args`` come from :func:`audio_maas.kserve.settings.parse_flags` and logs were set by
    :func:`audio_maas.kserve.logs.configure_logs`; KServe reads its other flags from the command line itself.
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
        finish_app(app, server=server, keep_timing=args.enable_latency_logging, openai=openai)

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
        max_streams=settings.max_streams if streams else None,
    )
    server.dataplane = DataPlane(model_registry=server.registered_models, model_version=settings.model_version)
    add_index_route(app, server.model_repository_extension)
    server.start(models)
