"""Errors mapped once: each class carries its HTTP status and its gRPC status code.

Both servers raise these; :func:`classify` also places KServe's own errors in the same table,
so a REST client and a gRPC client hear the same message under matching codes. A client's
mistake is never INTERNAL, and is logged without a traceback: it is the client's to fix.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, ClassVar, NamedTuple, NoReturn

import grpc
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from kserve import errors as kserve_errors

__all__ = [
    "BadRequest",
    "ErrorStatus",
    "ErrorStatusInterceptor",
    "ModelMismatch",
    "ModelNotFound",
    "PayloadTooLarge",
    "ServiceError",
    "Unauthenticated",
    "UpstreamUnavailable",
    "classify",
]

log = logging.getLogger(__name__)


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


class ErrorStatus(NamedTuple):
    http_status: HTTPStatus
    grpc_code: grpc.StatusCode
    message: str
    expected: bool
    """True for an error we answer for (a client's mistake, a model not ready): no traceback is
    logged. False for a fault of the server's own, which is logged with its traceback."""


_KSERVE_ERRORS: dict[type[Exception], type[ServiceError]] = {
    kserve_errors.InvalidInput: BadRequest,
    kserve_errors.UnsupportedProtocol: BadRequest,
    kserve_errors.ModelNotFound: ModelNotFound,
    kserve_errors.ModelNotReady: UpstreamUnavailable,
    kserve_errors.ServerNotReady: UpstreamUnavailable,
    kserve_errors.ServerNotLive: UpstreamUnavailable,
}
"""KServe's errors in our table. Its ``InferenceError`` is left out: KServe raises it for its
own faults as much as for clients', so it stays a 500 / INTERNAL with its traceback."""


def classify(error: BaseException) -> ErrorStatus:
    """The statuses and message that answer ``error``, on either protocol."""
    if isinstance(error, ServiceError):
        return ErrorStatus(error.http_status, error.grpc_code, str(error), True)
    for kserve_class, ours in _KSERVE_ERRORS.items():
        if isinstance(error, kserve_class):
            return ErrorStatus(ours.http_status, ours.grpc_code, str(error), True)
    if isinstance(error, NotImplementedError):
        return ErrorStatus(
            HTTPStatus.NOT_IMPLEMENTED, grpc.StatusCode.UNIMPLEMENTED, str(error) or "not implemented", True
        )
    return ErrorStatus(HTTPStatus.INTERNAL_SERVER_ERROR, grpc.StatusCode.INTERNAL, "internal server error", False)


class ErrorStatusInterceptor(AsyncExceptionToStatusInterceptor):
    """gRPC's rendering of :func:`classify`: the status code of the table and the message REST
    gives. It stands where KServe's ``ExceptionToStatusInterceptor`` would, which answers every
    error it does not know, ours included, with INTERNAL "Internal server error"."""

    async def handle_exception(
        self, ex: Exception, request_or_iterator: Any, context: grpc.aio.ServicerContext, method_name: str
    ) -> NoReturn:
        if isinstance(ex, grpc.aio.AbortError):  # the handler already chose its status
            raise ex
        answer = classify(ex)
        if not answer.expected:
            log.error("error answering %s", method_name, exc_info=ex)
        await context.abort(answer.grpc_code, answer.message)
        raise AssertionError("context.abort raises")  # for the type checker: abort never returns
