"""Live streams of requests: Triton's ``ModelStreamInfer`` on our gRPC port, the bidirectional
stream that tritonclient's ``start_stream`` and ``async_stream_infer`` drive (KServe's servers do
not offer it), and the same over a WebSocket on the REST port, for browsers.

On gRPC each request is a ``ModelInferRequest``, as for ``ModelInfer``; each response a
``ModelStreamInferResponse`` (``error_message`` = 1, ``infer_response`` = 2), whose two fields
are written here by hand: KServe's copy of the protocol has no such message, and tritonclient's
cannot be imported beside KServe's (both register the same protobuf names). As Triton answers
them, a request the model refuses gets ``error_message`` ("[StatusCode.NAME] our words"), with
the response's id and parameters beside it, and the stream goes on; what ends the stream (the
server's or the stream's bounds, a stream that falls silent) is its gRPC status.

On ``/v2/models/NAME/stream`` (WebSocket) each request is a text message holding a V2 REST
request, followed by one binary message with the raw bytes of its inputs when they are sent with
the binary tensor extension (``binary_data_size``), as a binary REST body would carry them; each
response is a text message holding a V2 REST response, data inline. A refused request is answered
``{"error": ..., "status": HTTP status, "id": ..., "parameters": ...}`` and the socket goes on;
what ends the stream ends the WebSocket with ``{"error": ...}`` and the close code 4000 + its
HTTP status (4408, 4429...).

A model streams if it is a :class:`~audio_maas.serving.model.StreamingModel`; the server holds
at most ``max_streams`` streams at once, of both kinds together (``audio_maas_streams_open``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from kserve import InferRequest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from audio_maas.kserve.adapter import KServeModel, read_request, write_response
from audio_maas.kserve.errors import classify
from audio_maas.kserve.tensors import check_request, parse_rest_request
from audio_maas.protocol.errors import BadRequest, StreamLimit
from audio_maas.protocol.messages import Request, Response
from audio_maas.serving.metrics import STREAM_REFUSALS, STREAMS_OPEN
from audio_maas.serving.model import Refusal, StreamingModel

__all__ = ["STREAM_METHOD", "StreamSlots", "stream_handler", "websocket_route"]

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
STREAM_METHOD = f"/{SERVICE}/ModelStreamInfer"
WEBSOCKET_PATH = "/v2/models/{name}/stream"


class StreamSlots:
    """The server's streams: at most ``max_streams`` open at once, whatever carries them."""

    def __init__(self, data_plane: Any, *, max_streams: int) -> None:
        self.data_plane = data_plane
        self.max_streams = max_streams
        self.open = 0

    async def responses(self, model_name: str, requests: AsyncIterator[Request]) -> AsyncIterator[Response | Refusal]:
        """``model_name``'s responses to ``requests``, holding a slot meanwhile."""
        served = await self.data_plane.get_model(model_name)  # ModelNotFound names it
        model = served.model if isinstance(served, KServeModel) else None
        if not isinstance(model, StreamingModel):
            raise BadRequest(f"model '{model_name}' does not answer streams: send it requests one by one")
        if self.open >= self.max_streams:
            STREAM_REFUSALS.labels(model_name, "max_streams").inc()
            raise StreamLimit(f"the server holds {self.open} streams, its limit (max_streams {self.max_streams})")
        self.open += 1
        STREAMS_OPEN.labels(model_name).inc()
        try:
            async for response in model.stream(requests):
                yield response
        finally:
            self.open -= 1
            STREAMS_OPEN.labels(model_name).dec()


def stream_handler(slots: StreamSlots) -> grpc.GenericRpcHandler:
    """The ``ModelStreamInfer`` method."""

    async def model_stream_infer(
        messages: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        first = await anext(aiter(messages), None)
        if first is None:
            return

        async def requests() -> AsyncIterator[Request]:
            async for message in _and_then(first, messages):
                if message.model_name != first.model_name:
                    raise BadRequest(f"one model per stream: '{first.model_name}', then '{message.model_name}'")
                request = InferRequest.from_grpc(message)
                check_request(request)
                yield read_request(request)

        async for response in slots.responses(first.model_name, requests()):
            if isinstance(response, Refusal):
                refusal = classify(response.error)
                message = f"[StatusCode.{refusal.grpc_code.name}] {refusal.message}"
                yield _field(1, message.encode()) + _field(2, _grpc(response.response))
            else:
                yield _field(2, _grpc(response))

    handler = grpc.stream_stream_rpc_method_handler(
        model_stream_infer, request_deserializer=pb.ModelInferRequest.FromString, response_serializer=bytes
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"ModelStreamInfer": handler})


def websocket_route(slots: StreamSlots) -> WebSocketRoute:
    """``/v2/models/NAME/stream``: the same streams over a WebSocket."""

    async def stream(websocket: WebSocket) -> None:
        model_name = websocket.path_params["name"]
        await websocket.accept()

        async def requests() -> AsyncIterator[Request]:
            while True:
                try:
                    header = await websocket.receive_text()
                except WebSocketDisconnect:
                    return
                except KeyError:  # starlette's receive_text of a binary message
                    raise BadRequest("each request begins with a text message: its V2 JSON") from None
                body = header.encode()
                if _declares_binary_data(header):
                    body += await websocket.receive_bytes()
                request = parse_rest_request(body, json_length=len(header.encode()), model_name=model_name)
                check_request(request)
                yield read_request(request)

        try:
            async for response in slots.responses(model_name, requests()):
                if isinstance(response, Refusal):
                    refusal = classify(response.error)
                    said = {
                        "error": refusal.message,
                        "status": int(refusal.http_status),
                        **_rest_json(response.response),
                    }
                    await websocket.send_text(json.dumps(said))
                else:
                    await websocket.send_text(json.dumps(_rest_json(response)))
        except WebSocketDisconnect:
            return
        except Exception as error:
            ended = classify(error)
            if not ended.expected:
                log.error("error answering a stream of %s", model_name, exc_info=error)
            if websocket.client_state == WebSocketState.CONNECTED:
                await websocket.send_text(json.dumps({"error": ended.message}))
                await websocket.close(code=4000 + ended.http_status, reason=ended.message[:120])
            return
        if websocket.client_state == WebSocketState.CONNECTED:  # not when the client closed first
            await websocket.close()

    return WebSocketRoute(WEBSOCKET_PATH, stream)


def _declares_binary_data(header: str) -> bool:
    """Whether the V2 request ``header`` sends an input's data in the binary message after it."""
    try:
        inputs = json.loads(header).get("inputs")
    except (ValueError, AttributeError):
        raise BadRequest("a request's text message must be a V2 request, a JSON object") from None
    return isinstance(inputs, list) and any(
        isinstance(item, dict) and "binary_data_size" in (item.get("parameters") or {}) for item in inputs
    )


def _grpc(response: Response) -> bytes:
    """A ``ModelInferResponse`` on the wire, outputs as raw contents (as ``ModelInfer``'s)."""
    return bytes(write_response(response, raw=True).to_grpc().SerializeToString())


def _rest_json(response: Response) -> dict[str, Any]:
    """A V2 REST response with every output's data inline (text for BYTES)."""
    outputs = []
    for output in response.outputs:
        value = output.value
        data = [v.decode() for v in value.reshape(-1)] if value.dtype == object else value.reshape(-1).tolist()
        outputs.append({"name": output.name, "shape": list(value.shape), "datatype": output.datatype, "data": data})
    parameters = {name: _plain(value) for name, value in response.parameters.items()}
    return {"model_name": response.model_name, "id": response.id, "parameters": parameters, "outputs": outputs}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


async def _and_then(
    first: pb.ModelInferRequest, rest: AsyncIterator[pb.ModelInferRequest]
) -> AsyncIterator[pb.ModelInferRequest]:
    yield first
    async for message in rest:
        yield message


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field of ``ModelStreamInferResponse`` on the wire."""
    return bytes([number << 3 | 2]) + _varint(len(value)) + value


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
