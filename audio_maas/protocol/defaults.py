"""Where the service listens and what it is called unless told otherwise, for the servers, the
chart, ``audio-maas`` and every client alike."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AUTH_TOKEN_ENV",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PREDICTOR_HTTP_PORT",
    "DEFAULT_PREDICTOR_PROTOCOL",
    "DEFAULT_URL",
]

DEFAULT_MODEL_NAME = "digits"
"""The model a request names when its sender names none (``predict``, the chart, the servers)."""
DEFAULT_HTTP_PORT = 8080
"""The transformer's REST port, as KServe's container contract has it; gRPC is on the next port."""
DEFAULT_PREDICTOR_HTTP_PORT = 8085
"""The local predictor's REST port (``audio-maas serve``); gRPC is on the next port."""
DEFAULT_PREDICTOR_PROTOCOL: Literal["grpc-v2", "v2"] = "grpc-v2"
"""How the transformer calls the predictor unless told: gRPC (``grpc-v2``), or binary REST (``v2``)."""
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"
"""Where ``audio-maas serve`` answers on this machine."""

AUTH_TOKEN_ENV = "AUDIO_MAAS_AUTH_TOKEN"
"""One variable for the whole local service: both servers check it, the transformer sends it
to the predictor, ``audio-maas predict`` sends it to the transformer."""
