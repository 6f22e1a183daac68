"""Errors mapped once: each class carries its HTTP status and its gRPC status code.

Both servers raise these, and ``audio_maas.kserve.errors`` renders them (and KServe's own) on
either protocol, so a REST client and a gRPC client hear the same message under matching codes.
A client's mistake is never INTERNAL.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar

import grpc

__all__ = [
    "BadGateway",
    "BadRequest",
    "ModelMismatch",
    "ModelNotFound",
    "PayloadTooLarge",
    "ServiceError",
    "StreamIdle",
    "StreamLimit",
    "Unauthenticated",
    "UpstreamUnavailable",
    "error_class",
]


class ServiceError(Exception):
    """An error whose message the client should read, answered with its class's statuses."""

    http_status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL


class BadRequest(ServiceError):
    """The request itself is wrong: a malformed tensor, undecodable audio, a bad parameter."""

    http_status = HTTPStatus.BAD_REQUEST
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLarge(ServiceError):
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StreamLimit(ServiceError):
    """A live stream over one of the server's bounds: streams open, or seconds of audio held."""

    http_status = HTTPStatus.TOO_MANY_REQUESTS
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StreamIdle(ServiceError):
    """A live stream that sent nothing for longer than the server waits."""

    http_status = HTTPStatus.REQUEST_TIMEOUT
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ModelNotFound(ServiceError):
    """No such model, or no such version of it."""

    http_status = HTTPStatus.NOT_FOUND
    grpc_code = grpc.StatusCode.NOT_FOUND


class Unauthenticated(ServiceError):
    http_status = HTTPStatus.UNAUTHORIZED
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class ModelMismatch(ServiceError):
    """The transformer calling this predictor has another model's feature spec or labels."""

    http_status = HTTPStatus.CONFLICT
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class UpstreamUnavailable(ServiceError):
    """The predictor is away or its model not ready: worth retrying later."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = grpc.StatusCode.UNAVAILABLE


class BadGateway(ServiceError):
    """The predictor failed on a request the transformer made of a good one: a server fault
    upstream, not the client's. gRPC has no status of its own for it; UNAVAILABLE says retry."""

    http_status = HTTPStatus.BAD_GATEWAY
    grpc_code = grpc.StatusCode.UNAVAILABLE


_PASSED_ON: tuple[type[ServiceError], ...] = (BadRequest, ModelNotFound)
"""What an upstream may answer that stays what it is for our client: the request's own mistake."""
_TRANSIENT: tuple[type[ServiceError], ...] = (UpstreamUnavailable, ModelMismatch)
"""An upstream away, not ready, or serving another model (a rollout pairing two revisions): 503."""


def error_class(*, http_status: int | None = None, grpc_code: grpc.StatusCode | None = None) -> type[ServiceError]:
    """The error an upstream's refusal becomes here, by its HTTP status or gRPC code: the client's
    mistake stays that mistake (400, 404); an upstream away, not ready or serving another model
    is :class:`UpstreamUnavailable` (503); anything else upstream, a fault there or in what we
    sent it, is :class:`BadGateway` (502)."""
    for error in _PASSED_ON:
        if http_status == error.http_status or grpc_code == error.grpc_code:
            return error
    if grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED or any(
        http_status == error.http_status or grpc_code == error.grpc_code for error in _TRANSIENT
    ):
        return UpstreamUnavailable
    return BadGateway
