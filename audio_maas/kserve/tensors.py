"""KServe's request objects read through our codec (``audio_maas.protocol.codec``): framing
checked, tensors as the codec reads them, binary REST bodies parsed into requests.
"""

from __future__ import annotations

import struct
from typing import Any

from kserve import InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput

from audio_maas.protocol import codec
from audio_maas.protocol.codec import Tensor
from audio_maas.protocol.errors import BadRequest

__all__ = ["check_request", "parse_rest_request", "request_parameter", "tensor"]


def tensor(infer_input: InferInput) -> Tensor:
    """What ``infer_input`` carries, for the codec."""
    raw = infer_input._raw_data  # binary REST data or gRPC raw_input_contents; KServe has no public accessor
    if raw is not None and not isinstance(raw, bytes):
        raw = bytes(raw)
    return Tensor(infer_input.name, infer_input.shape, infer_input.datatype, raw, infer_input.data)


def check_request(request: InferRequest) -> None:
    """Check every input's framing before anything reads it (see ``audio_maas.protocol.codec``)."""
    names = [infer_input.name for infer_input in request.inputs]
    if len(set(names)) != len(names):
        raise BadRequest(f"input names must be unique, got {names}")
    for infer_input in request.inputs:
        codec.check_tensor(tensor(infer_input))


def request_parameter(request: InferRequest, name: str) -> Any:
    """A request parameter's value, from a REST dict or a gRPC ``InferParameter``; None when absent."""
    value = (request.parameters or {}).get(name)
    if value is None or isinstance(value, (bool, int, float, str)) or not hasattr(value, "WhichOneof"):
        return value
    which = value.WhichOneof("parameter_choice")
    return getattr(value, which) if which else _beyond_kserves_proto(value)


def _beyond_kserves_proto(parameter: Any) -> float | int | None:
    """The protocol's ``double_param`` (4) and ``uint64_param`` (5), which KServe's copy of the
    proto lacks: protobuf keeps them as unknown fields, and KServe would pass on an empty value."""
    from google.protobuf.unknown_fields import UnknownFieldSet

    for field in UnknownFieldSet(parameter):
        if field.field_number == 4 and field.wire_type == 1:  # fixed 64 bits: an IEEE double
            return float(struct.unpack("<d", struct.pack("<Q", field.data))[0])
        if field.field_number == 5 and field.wire_type == 0:  # varint
            return int(field.data)
    return None


def parse_rest_request(body: bytes, *, json_length: int, model_name: str) -> InferRequest:
    """A V2 REST request with the binary tensor extension -> ``InferRequest``.

    Binary inputs keep their raw bytes (KServe's own ``from_bytes`` re-decodes BYTES as UTF-8,
    which audio never is, and turns FP32 into a Python list). Each tensor's framing is checked by
    :func:`check_request`, which the data plane runs on every request of either protocol.
    """
    header, raws = codec.split_binary_body(body, json_length=json_length)
    if not isinstance(header.get("parameters", {}), dict | None) or not isinstance(header.get("id", ""), str):
        raise BadRequest("request 'parameters' must be an object and 'id' a string")
    inputs = [
        InferInput(
            name=item["name"], shape=item["shape"], datatype=item["datatype"], parameters=item.get("parameters") or None
        )
        for item in header["inputs"]
    ]
    for infer_input, item, raw in zip(inputs, header["inputs"], raws, strict=True):
        if raw is None:
            infer_input.data = item["data"]
    outputs = header.get("outputs") or []
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) and isinstance(o.get("parameters"), dict | None)
        for o in outputs
    ):
        raise BadRequest("request 'outputs' must be a list of objects with a 'name' and optional 'parameters'")
    request = InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=header.get("id"),
        parameters=header.get("parameters"),
        request_outputs=[RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in outputs],
    )
    for infer_input, raw in zip(request.inputs, raws, strict=True):
        infer_input._raw_data = raw  # what InferRequest(raw_inputs=...) does, for only some inputs
    return request
