"""``audio-maas serve`` and ``predict``.

``serve`` takes every setting the two servers take: its own flags say where they listen
(:class:`~serving.settings.ServiceSettings`), and each field of ``TransformerSettings`` and
``PredictorSettings`` is a ``--flag`` forwarded to the server that has it, or to both.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from cli.training import BUNDLED_MODEL_DIR
from serving.contract import AUTH_TOKEN_ENV
from serving.settings import ServiceSettings

__all__ = ["add_commands"]

_SET_BY_SERVE = frozenset({"model_dir", "auth_token"})
"""Server settings that ``serve`` sets itself: the model from ``--model``, the token from the environment."""


def add_commands(commands: Any) -> None:
    defaults = ServiceSettings()
    serve = commands.add_parser(
        "serve", help=f"run transformer and predictor on this machine (requests need ${AUTH_TOKEN_ENV} when set)"
    )
    serve.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR, help="model directory (default: bundled CNN)")
    serve.add_argument("--model-name", default=defaults.model_name, help="name the model is served under")
    serve.add_argument(
        "--http-port", type=int, default=defaults.http_port, help="transformer REST port (gRPC: the next)"
    )
    serve.add_argument(
        "--predictor-port", type=int, default=defaults.predictor_http_port, help="predictor REST port (gRPC: the next)"
    )
    serve.add_argument(
        "--predictor-protocol",
        choices=["grpc-v2", "v2"],
        default=defaults.predictor_protocol,
        help="transformer to predictor hop",
    )
    servers = serve.add_argument_group("server settings", "forwarded to the server(s) named; each its default if unset")
    for name, (help_text, owners) in _server_fields().items():
        servers.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"({' and '.join(owners)}) {help_text}")
    serve.set_defaults(run=_serve)

    predict = commands.add_parser(
        "predict", help=f"classify audio files through the V2 API (sends ${AUTH_TOKEN_ENV} when set)"
    )
    predict.add_argument("files", type=Path, nargs="+", metavar="FILE")
    predict.add_argument("--url", default=defaults.url, help="the transformer's base URL")
    predict.add_argument("--model-name", default=defaults.model_name)
    predict.set_defaults(run=_predict)


def _server_settings() -> dict[str, type[BaseSettings]]:
    from predictor.settings import PredictorSettings
    from transformer.settings import TransformerSettings

    return {"transformer": TransformerSettings, "predictor": PredictorSettings}


def _server_fields() -> dict[str, tuple[str, list[str]]]:
    """Each forwardable setting -> (its description, the servers that take it)."""
    fields: dict[str, tuple[str, list[str]]] = {}
    for server, settings_class in _server_settings().items():
        for name, field in settings_class.model_fields.items():
            if name not in _SET_BY_SERVE:
                fields.setdefault(name, ((field.description or "").split("\n")[0], []))[1].append(server)
    return fields


def _serve(args: argparse.Namespace) -> int:
    from cli.local import LocalService, serve

    if not (args.model / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{args.model} is not a SavedModel directory")
    try:
        settings = ServiceSettings(
            model_name=args.model_name,
            http_port=args.http_port,
            predictor_http_port=args.predictor_port,
            predictor_protocol=args.predictor_protocol,
        )
    except ValidationError as error:
        raise ValueError(str(error)) from None
    flags: dict[str, dict[str, str]] = {}
    for server, settings_class in _server_settings().items():
        given = {
            name: getattr(args, name)
            for name in settings_class.model_fields
            if name not in _SET_BY_SERVE and getattr(args, name, None) is not None
        }
        try:  # fail here, naming the setting, rather than in a server started in the background
            settings_class(model_dir=args.model, **given)
        except ValidationError as error:
            raise ValueError(str(error)) from None
        flags[server] = given
    service = LocalService(
        model_dir=args.model.resolve(),
        settings=settings,
        transformer_flags=flags["transformer"],
        predictor_flags=flags["predictor"],
    )
    return serve(service)


def _predict(args: argparse.Namespace) -> int:
    from transformer.client import ServiceUnreachable, predict_files

    try:
        token = os.environ.get(AUTH_TOKEN_ENV)
        predictions = predict_files(args.files, url=args.url, model_name=args.model_name, auth_token=token)
    except ServiceUnreachable as error:
        print(f"audio-maas predict: {error}", file=sys.stderr)
        return 1
    for prediction in predictions:
        top = ", ".join(f"{class_id}: {probability:.3f}" for class_id, probability in prediction.top)
        print(f"{prediction.path}: {prediction.label}  (top-3 class_id: probability: {top})")
    return 0
