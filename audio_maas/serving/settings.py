"""Settings as typed objects, and the one place their defaults are defined.

- :class:`ServerSettings`: what both servers take alike; ``TransformerSettings`` and
  ``PredictorSettings`` add their own, each under its environment prefix.
- :class:`ServiceSettings`: where the service listens and what it calls its model, read by
  ``audio-maas serve`` and ``predict``, the tests, the benchmark, and checked against the chart.

Every field is also a command-line flag (``audio_maas.kserve.settings.parse_flags``), which wins
over its variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from audio_maas.protocol.defaults import (
    AUTH_TOKEN_ENV,
    DEFAULT_HTTP_PORT,
    DEFAULT_MODEL_NAME,
    DEFAULT_PREDICTOR_HTTP_PORT,
    DEFAULT_PREDICTOR_PROTOCOL,
)
from audio_maas.protocol.model_dir import MODEL_NAME_PATTERN, model_directories, storage_model_dir

__all__ = ["ServerSettings", "ServiceSettings"]

_MODEL_NAME = f"^{MODEL_NAME_PATTERN}$"


class ServiceSettings(BaseSettings):
    """The service's addresses and model name (``AUDIO_MAAS_*``). KServe's container contract puts
    REST on 8080 and gRPC on the next port, as the chart does; locally the predictor sits beside
    the transformer, on its own pair of ports."""

    model_config = SettingsConfigDict(env_prefix="AUDIO_MAAS_", frozen=True, use_attribute_docstrings=True)

    model_name: str = Field(default=DEFAULT_MODEL_NAME, pattern=_MODEL_NAME)
    """The name the model is served under: ``/v2/models/{model_name}/infer``."""
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=1, le=65534)
    """The transformer's REST port; its gRPC port is the next one."""
    predictor_http_port: int = Field(default=DEFAULT_PREDICTOR_HTTP_PORT, ge=1, le=65534)
    """The predictor's REST port; its gRPC port is the next one."""
    predictor_protocol: Literal["grpc-v2", "v2"] = DEFAULT_PREDICTOR_PROTOCOL
    """How the transformer calls the predictor: gRPC (``grpc-v2``) or binary REST (``v2``)."""

    @property
    def grpc_port(self) -> int:
        return self.http_port + 1

    @property
    def predictor_grpc_port(self) -> int:
        return self.predictor_http_port + 1

    @property
    def url(self) -> str:
        """The transformer's base URL on loopback (KServe binds every interface)."""
        return f"http://127.0.0.1:{self.http_port}"


class ServerSettings(BaseSettings):
    """What both servers are configured with alike; each subclass adds its own env prefix."""

    model_config = SettingsConfigDict(frozen=True, use_attribute_docstrings=True)

    model_dir: Path = Field(default_factory=storage_model_dir)
    """The model directory (``audio_maas.protocol.contract``) served under ``--model_name``; KServe's storage
    initializer puts ``storageUri`` here."""
    model_repository: Path | None = None
    """A directory of model directories, each served under its own name; when set, it replaces
    ``model_dir`` and ``--model_name``."""
    model_version: str = Field(default="1", pattern=_MODEL_NAME)
    """The model version served, as metadata and ``/v2/models/NAME/versions/VERSION/...`` name it."""
    max_body_bytes: int = Field(default=32 * 2**20, ge=1024)
    """Largest request body (bytes); larger is answered 413 before it is read."""
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    """Most feature rows in one model call: the predictor's batch, and what the transformer stacks
    into one predictor call from requests that arrive while a call is in flight."""
    max_streams: int = Field(default=64, ge=1)
    """Live streams (gRPC ``ModelStreamInfer``) open at once; more are refused with
    RESOURCE_EXHAUSTED naming this limit. Only the transformer's models stream."""
    auth_token: SecretStr | None = Field(default=None, validation_alias=AUTH_TOKEN_ENV)
    """Bearer token that every request except health checks must carry (``Authorization: Bearer
    TOKEN``; gRPC metadata ``authorization``). Read from ``AUDIO_MAAS_AUTH_TOKEN`` only, never from
    a flag, which any user of the machine could read in ``ps``."""

    def served_models(self, model_name: str) -> dict[str, Path]:
        """Name -> model directory of every model this server serves."""
        if self.model_repository is not None:
            return model_directories(self.model_repository)
        return {model_name: self.model_dir}
