"""Our error table (``audio_maas.protocol.errors``) with KServe's own errors placed in it, and
gRPC's rendering of it. REST's rendering is ``audio_maas.kserve.asgi.V2Errors``. A client's
mistake is logged without a traceback: it is the client's to fix; a fault of ours with one.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, NamedTuple, NoReturn

import grpc
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from kserve import errors as kserve_errors

from audio_maas.protocol.errors import (
    BadRequest,
    ModelNotFound,
    ServiceError,
    UpstreamUnavailable,
)

__all__ = ["ErrorStatus", "ErrorStatusInterceptor", "classify"]

log = logging.getLogger(__name__)


class ErrorStatus(NamedTuple):
    http_status: HTTPStatus
    grpc_code: grpc.StatusCode
    message: str
    expected: bool
    """True for an error we expect (a client's mistake, a model not ready): no traceback is
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
        status = classify(ex)
        if not status.expected:
            log.error("error answering %s", method_name, exc_info=ex)
        await context.abort(status.grpc_code, status.message)
        raise AssertionError("context.abort raises")  # for the type checker: abort never returns
