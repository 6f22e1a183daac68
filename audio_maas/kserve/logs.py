"""Logs that say what happened once, and never what a user sent.

No timing lines per request (KServe's TimingMiddleware is dropped unless
``--enable_latency_logging``) nor per gRPC call, and no traceback for what is answered and
reported without one. Nothing we log carries audio, tensor values or the token, at any level.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import grpc
from kserve import logging as kserve_logging
from kserve.errors import ModelNotReady

__all__ = ["configure_logs"]


class _AnsweredErrors(logging.Filter):
    """Drops KServe's ERROR tracebacks for what is answered and reported without them: a readiness
    probe before the model is ready (its answer is the 503) and a failed predictor call (the
    transformer answers 503 naming the reason, and the batcher logs it once per batch)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (ModelNotReady, grpc.RpcError))


def configure_logs(args: argparse.Namespace) -> None:
    """Logging as KServe's flags say, set before the model loads so that what ``load()`` logs (the
    device, the tensors) is seen. Our modules log like KServe's own: its handler, its level
    (KSERVE_LOGLEVEL)."""
    if args.configure_logging:  # ModelServer would do it later, after load(); it skips a configured logger
        kserve_logging.configure_logging(args.log_config_file)
    kserve_log = logging.getLogger("kserve")
    ours = logging.getLogger("audio_maas")
    ours.setLevel(kserve_log.level)
    ours.handlers = list(kserve_log.handlers)
    ours.propagate = False
    trace_log = logging.getLogger("kserve.trace")
    for logger in (kserve_log, trace_log):
        logger.addFilter(_AnsweredErrors())
    # FastAPI 0.165 deprecates the ORJSONResponse that KServe 0.21's app answers with, and says
    # so on each server's first request: a note on KServe's code that no user of ours can act on.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated", category=UserWarning)
