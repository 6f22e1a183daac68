"""A V2 inference request and response as our models see them: plain values and numpy, no
framework. The server's adapter (``audio_maas.kserve.adapter``) reads either protocol into a
:class:`Request` and writes a :class:`Response` back in the encoding the client asked for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio_maas.protocol.codec import Tensor

__all__ = ["Output", "Request", "Response", "respond"]


@dataclass(frozen=True)
class Request:
    """One inference request: its inputs (checked by ``audio_maas.protocol.codec.check_tensor``),
    its parameters as plain values, and the outputs it names (none: the model's defaults)."""

    inputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    id: str = ""
    model_name: str = ""

    def parameter(self, name: str) -> Any:
        """A parameter's value; None when absent."""
        return self.parameters.get(name)


@dataclass(frozen=True)
class Output:
    """One output tensor: its V2 datatype and value (``object`` arrays of bytes for BYTES)."""

    name: str
    datatype: str
    value: np.ndarray


@dataclass(frozen=True)
class Response:
    """One inference response; ``id`` is the request's, or a new one when it had none."""

    outputs: list[Output]
    id: str
    model_name: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def output(self, name: str) -> np.ndarray:
        """An output's value by name; KeyError when it has none."""
        for output in self.outputs:
            if output.name == name:
                return output.value
        raise KeyError(name)


def respond(
    request: Request, outputs: Iterable[Output], *, model_name: str, parameters: dict[str, Any] | None = None
) -> Response:
    """The response to ``request``: of ``outputs``, those it names (all when it names none), and its id."""
    wanted = set(request.outputs)
    return Response(
        outputs=[output for output in outputs if not wanted or output.name in wanted],
        id=request.id or str(uuid.uuid4()),  # V2 responses always carry an id
        model_name=model_name,
        parameters=parameters or {},
    )
