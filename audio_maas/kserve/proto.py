"""The V2 gRPC messages and service stub, as KServe generates them from the protocol's proto: the
one import of them outside KServe's own servers, for the transformer's calls to its predictor."""

from __future__ import annotations

from typing import Any

from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

__all__ = ["pb", "stub"]


def stub(channel: Any) -> Any:
    """The ``GRPCInferenceService`` stub over ``channel``."""
    return GRPCInferenceServiceStub(channel)
