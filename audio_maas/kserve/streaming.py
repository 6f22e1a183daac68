"""Triton's ``ModelStreamInfer`` on our gRPC port: the bidirectional stream that tritonclient's
``start_stream`` and ``async_stream_infer`` drive, which KServe's servers do not offer.

Each request on the stream is a ``ModelInferRequest``, as for ``ModelInfer``; each answer a
``ModelStreamInferResponse`` (``error_message`` = 1, ``infer_response`` = 2), whose two fields
are written here by hand: KServe's copy of the protocol has no such message, and tritonclient's
cannot be imported beside KServe's (both register the same protobuf names). A model streams if it
has a :class:`StreamingModel` ``stream`` method; the server holds at most ``max_streams`` at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import grpc
from kserve import InferRequest, InferResponse
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from audio_maas.kserve.tensors import check_request
from audio_maas.protocol.errors import BadRequest, StreamLimit

__all__ = ["STREAM_METHOD", "StreamingModel", "stream_handler"]

SERVICE = "inference.GRPCInferenceService"
STREAM_METHOD = f"/{SERVICE}/ModelStreamInfer"


@runtime_checkable
class StreamingModel(Protocol):
    """A model that answers a stream of requests with a stream of answers, as they come."""

    def stream(self, requests: AsyncIterator[InferRequest]) -> AsyncIterator[InferResponse]: ...


def stream_handler(data_plane: Any, *, max_streams: int) -> grpc.GenericRpcHandler:
    """The ``ModelStreamInfer`` method for a server whose models ``data_plane`` finds."""
    open_streams = 0

    async def model_stream_infer(
        messages: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        nonlocal open_streams
        if open_streams >= max_streams:
            raise StreamLimit(f"the server holds {open_streams} streams, its limit (max_streams {max_streams})")
        open_streams += 1
        try:
            first = await anext(aiter(messages), None)
            if first is None:
                return
            model = await data_plane.get_model(first.model_name)  # ModelNotFound names it
            if not isinstance(model, StreamingModel):
                raise BadRequest(f"model '{first.model_name}' does not answer streams: call ModelInfer")

            async def requests() -> AsyncIterator[InferRequest]:
                async for message in _and_then(first, messages):
                    if message.model_name != first.model_name:
                        raise BadRequest(f"one model per stream: '{first.model_name}', then '{message.model_name}'")
                    request = InferRequest.from_grpc(message)
                    check_request(request)
                    yield request

            async for response in model.stream(requests()):
                yield _stream_response(response.to_grpc().SerializeToString())
        finally:
            open_streams -= 1

    handler = grpc.stream_stream_rpc_method_handler(
        model_stream_infer, request_deserializer=pb.ModelInferRequest.FromString, response_serializer=bytes
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"ModelStreamInfer": handler})


async def _and_then(
    first: pb.ModelInferRequest, rest: AsyncIterator[pb.ModelInferRequest]
) -> AsyncIterator[pb.ModelInferRequest]:
    yield first
    async for message in rest:
        yield message


def _stream_response(infer_response: bytes) -> bytes:
    """``ModelStreamInferResponse{infer_response: ...}`` on the wire: field 2, length-delimited."""
    return b"\x12" + _varint(len(infer_response)) + infer_response


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
