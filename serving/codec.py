"""V2 tensors to and from numpy: the datatype table, BYTES framing, base64, binary REST bodies.

Every tensor a client sends is checked here before any model reads it, on both protocols and
for every datatype: the shape is a list of non-negative sizes; binary data is a whole number
of elements; each BYTES element's 4-byte length prefix fits in the bytes left; the element
count equals the product of the shape; nothing is left over. A violation is a
:class:`~serving.errors.BadRequest` naming the input and what does not add up, never a Python
exception's text (KServe's own helpers raise ``struct.error`` or a reshape ``ValueError`` for
these, which become 500s and cost the client its connection).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
from kserve import InferInput, InferOutput, InferRequest
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.infer_type import RequestedOutput

from serving.errors import BadRequest

__all__ = [
    "DATATYPES",
    "asked_outputs",
    "bytes_elements",
    "check_request",
    "decode_bytes_tensor",
    "dtype_of",
    "encode_bytes_tensor",
    "parse_rest_request",
    "request_parameter",
    "to_numpy",
]

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
"""V2 datatype -> numpy dtype; binary data is little-endian, ``itemsize`` bytes an element
(BYTES: a 4-byte little-endian length, then that many bytes, per element)."""

_PREFIX = 4


def encode_bytes_tensor(elements: Iterable[bytes]) -> bytes:
    """BYTES elements -> the V2 binary form: each a 4-byte little-endian length, then its bytes."""
    return b"".join(len(element).to_bytes(_PREFIX, "little") + element for element in elements)


def decode_bytes_tensor(raw: bytes, *, name: str, shape: Sequence[int]) -> list[bytes]:
    """The inverse of :func:`encode_bytes_tensor`, checked: as many elements as ``shape`` holds,
    each within the bytes left, and nothing after the last. ``name`` is the input's, for messages."""
    count = math.prod(shape)
    view = memoryview(raw)
    elements: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(elements) == count:
            raise BadRequest(f"input '{name}' has shape {list(shape)} ({_elements(count)}) but more bytes follow")
        if offset + _PREFIX > len(view):
            raise BadRequest(
                f"input '{name}' element {len(elements)}: {len(view) - offset} byte(s) left, "
                "too few for its 4-byte length"
            )
        length = int.from_bytes(view[offset : offset + _PREFIX], "little")
        offset += _PREFIX
        if length > len(view) - offset:
            raise BadRequest(
                f"input '{name}' element {len(elements)} declares {length} bytes but only {len(view) - offset} follow"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise _count_mismatch(name, shape, len(elements))
    return elements


def _elements(count: int) -> str:
    return f"{count} element{'' if count == 1 else 's'}"


def _count_mismatch(name: str, shape: Sequence[int], carried: int) -> BadRequest:
    return BadRequest(f"input '{name}' has shape {list(shape)} ({_elements(math.prod(shape))}) but carries {carried}")


def _element_count(infer_input: InferInput) -> int:
    shape = infer_input.shape
    if not isinstance(shape, Sequence) or any(
        not isinstance(size, int) or isinstance(size, bool) or size < 0 for size in shape
    ):
        raise BadRequest(f"input '{infer_input.name}' has shape {shape}: sizes must be non-negative integers")
    return math.prod(shape)


def dtype_of(*, name: str, datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype, or BadRequest naming input ``name`` and the known ones."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"input '{name}' has datatype {datatype!r}; known: {', '.join(DATATYPES)}")
    return dtype


def _raw(infer_input: InferInput) -> bytes | None:
    raw = infer_input._raw_data  # binary REST data or gRPC raw_input_contents; KServe has no public accessor
    return raw if raw is None or isinstance(raw, bytes) else bytes(raw)


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [element for item in data for element in _flatten(item)]
    return [data]


def _check_tensor(infer_input: InferInput) -> None:
    """The framing checks of the module docstring for one input; decodes no values."""
    count = _element_count(infer_input)
    dtype = dtype_of(name=infer_input.name, datatype=infer_input.datatype)
    raw = _raw(infer_input)
    name = infer_input.name
    if raw is None:
        carried = len(_flatten(infer_input.data)) if infer_input.data is not None else 0
        if carried != count:
            raise _count_mismatch(name, infer_input.shape, carried)
    elif infer_input.datatype == "BYTES":
        decode_bytes_tensor(raw, name=name, shape=infer_input.shape)
    elif len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}' has shape {infer_input.shape} ({_elements(count)} of {infer_input.datatype}, "
            f"{count * dtype.itemsize} bytes) but {len(raw)} bytes were sent"
        )


def check_request(request: InferRequest) -> None:
    """Check every input's framing before anything reads it (see the module docstring)."""
    names = [infer_input.name for infer_input in request.inputs]
    if len(set(names)) != len(names):
        raise BadRequest(f"input names must be unique, got {names}")
    for infer_input in request.inputs:
        _check_tensor(infer_input)


def to_numpy(infer_input: InferInput) -> np.ndarray:
    """A fixed-size input as an array of its datatype and shape; BYTES as an object array of bytes."""
    shape = list(infer_input.shape)
    if infer_input.datatype == "BYTES":  # bytes_elements checks the framing as it parses it
        return np.array(bytes_elements(infer_input), dtype=object).reshape(shape)
    _check_tensor(infer_input)
    dtype = dtype_of(name=infer_input.name, datatype=infer_input.datatype)
    raw = _raw(infer_input)
    if raw is not None:
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
    try:
        return np.asarray(_flatten(infer_input.data), dtype=dtype).reshape(shape)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"input '{infer_input.name}' data are not all {infer_input.datatype} values") from None


def bytes_elements(infer_input: InferInput) -> list[bytes]:
    """The elements of a BYTES tensor as bytes, in row-major order.

    Binary tensor data carries raw bytes; JSON carries strings, which for binary content must be
    base64 (JSON has no bytes type), so JSON strings are base64-decoded; gRPC ``bytes_contents``
    arrive as bytes.
    """
    if infer_input.datatype != "BYTES":
        raise BadRequest(f"input '{infer_input.name}' must be BYTES, got {infer_input.datatype}")
    count = _element_count(infer_input)
    raw = _raw(infer_input)
    if raw is not None:
        return decode_bytes_tensor(raw, name=infer_input.name, shape=infer_input.shape)
    elements = []
    for index, element in enumerate(_flatten(infer_input.data) if infer_input.data is not None else []):
        if isinstance(element, (bytes, bytearray)):
            elements.append(bytes(element))
            continue
        try:
            elements.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise BadRequest(
                f"input '{infer_input.name}' element {index} is not base64: send binary data, or base64 in JSON"
            ) from None
    if len(elements) != count:
        raise _count_mismatch(infer_input.name, infer_input.shape, len(elements))
    return elements


def asked_outputs(
    request: InferRequest, answers: Iterable[tuple[str, str, np.ndarray]], *, binary_data: bool
) -> list[InferOutput]:
    """The ``(name, datatype, value)`` answers the request asked for (all when it names none), as
    outputs. Both protocols alike: KServe leaves out what was not asked for only in REST's encoder."""
    wanted = {output.name for output in request.request_outputs or []}
    outputs = []
    for name, datatype, value in answers:
        if not wanted or name in wanted:
            output = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
            output.set_data_from_numpy(value, binary_data=binary_data)
            outputs.append(output)
    return outputs


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

    ``body`` is ``json_length`` bytes of JSON followed by each binary input's bytes, in input
    order. Binary inputs keep their raw bytes (KServe's own ``from_bytes`` re-decodes BYTES as
    UTF-8, which audio never is, and turns FP32 into a Python list). The JSON and the byte counts
    are checked here; each tensor's framing by :func:`check_request`, which the data plane runs
    on every request of either protocol before a model sees it.
    """
    if not 0 < json_length <= len(body):
        raise BadRequest(f"{INFERENCE_CONTENT_LENGTH_HEADER} is {json_length} but the body has {len(body)} bytes")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request JSON is malformed: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("request JSON must be an object with an 'inputs' list")
    if not isinstance(header.get("parameters", {}), dict | None) or not isinstance(header.get("id", ""), str):
        raise BadRequest("request 'parameters' must be an object and 'id' a string")
    inputs: list[InferInput] = []
    raw_inputs: list[bytes | None] = []
    offset = json_length
    for position, item in enumerate(header["inputs"]):
        if not isinstance(item, dict) or not {"name", "shape", "datatype"} <= item.keys():
            raise BadRequest(f"input {position} must have 'name', 'shape' and 'datatype'")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest(f"input '{item['name']}' parameters must be an object")
        infer_input = InferInput(
            name=item["name"], shape=item["shape"], datatype=item["datatype"], parameters=parameters or None
        )
        size = parameters.get("binary_data_size")
        if "data" in item:
            infer_input.data = item["data"]
            raw_inputs.append(None)
        elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            if offset + size > len(body):
                raise BadRequest(
                    f"input '{item['name']}' declares {size} binary bytes but only {len(body) - offset} follow"
                )
            raw_inputs.append(body[offset : offset + size])
            offset += size
        else:
            raise BadRequest(f"input '{item['name']}' has neither 'data' nor a binary_data_size parameter")
        inputs.append(infer_input)
    if offset != len(body):
        raise BadRequest(f"{len(body) - offset} bytes follow the binary inputs that no input declares")
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
    for infer_input, raw in zip(request.inputs, raw_inputs, strict=True):
        infer_input._raw_data = raw  # what InferRequest(raw_inputs=...) does, for only some inputs
    return request
