"""What a server serves, with no framework: a model that answers :class:`~audio_maas.protocol.messages.Request`
objects with :class:`~audio_maas.protocol.messages.Response` objects, and may answer streams of them.

The transformer's and the predictor's models implement :class:`ServedModel`; the server's adapter
(``audio_maas.kserve.adapter``) alone puts them on the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from audio_maas.protocol.errors import ServiceError
from audio_maas.protocol.messages import Request, Response

__all__ = ["Refusal", "ServedModel", "StreamingModel", "TensorMetadata"]

TensorMetadata = dict[str, Any]
"""A tensor as V2 metadata names it: ``{"name", "datatype", "shape"}``, ``-1`` for a size that varies."""


class ServedModel(Protocol):
    """A model a server serves under ``name``."""

    name: str

    def load(self) -> None:
        """Read the model, before the server starts; raises naming what is wrong."""

    async def open(self) -> None:
        """Load while the server serves (by name, from the repository); raises naming what is wrong."""

    async def ready(self) -> bool:
        """Whether it answers now (loaded, and whatever it relies on ready too)."""

    def inputs(self) -> list[TensorMetadata]: ...

    def outputs(self) -> list[TensorMetadata]: ...

    async def infer(self, request: Request) -> Response:
        """The response to ``request``; raises a :class:`ServiceError` naming what it refuses."""

    def unload(self) -> None:
        """Stop: requests in flight finish, then nothing holds the model."""


@runtime_checkable
class StreamingModel(Protocol):
    """A model that also answers a stream of requests with a stream of responses, as they come."""

    def stream(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response | Refusal]:
        """A :class:`Refusal` refuses one request and the stream goes on; an error raised ends it."""


@dataclass(frozen=True)
class Refusal:
    """A request of a stream refused: why, and the response that names it (its id and parameters,
    the sequence among them; no outputs)."""

    error: ServiceError
    response: Response
