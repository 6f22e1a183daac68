"""V2 tensors to and from numpy: the datatype table, BYTES framing, base64, binary bodies.

Every tensor a client sends is checked here before any model reads it, on both protocols and
for every datatype: the shape is a list of non-negative sizes; binary data is a whole number
of elements; each BYTES element's 4-byte length prefix fits in the bytes left; the element
count equals the product of the shape; nothing is left over. A violation is a
:class:`~audio_maas.protocol.errors.BadRequest` naming the input and what does not add up, never
a Python exception's text (KServe's own helpers raise ``struct.error`` or a reshape
``ValueError`` for these, which become 500s and cost the client its connection).

Nothing here knows KServe: a tensor is a :class:`Tensor`, what either protocol carries of one;
``audio_maas.kserve.tensors`` reads KServe's request objects as these.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from audio_maas.protocol.errors import BadRequest

__all__ = [
    "BINARY_HEADER",
    "DATATYPES",
    "Tensor",
    "binary_body",
    "bytes_elements",
    "check_tensor",
    "decode_bytes_tensor",
    "dtype_of",
    "encode_bytes_tensor",
    "split_binary_body",
    "to_numpy",
]

BINARY_HEADER = "Inference-Header-Content-Length"
"""The binary tensor extension's header: how many bytes of JSON open the body."""

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


@dataclass(frozen=True)
class Tensor:
    """One V2 tensor as a request carries it: ``raw`` binary data (binary REST, gRPC's raw
    contents) or ``data`` values (JSON, gRPC's typed contents), never both."""

    name: str
    shape: Any
    """As sent: checked by :func:`check_tensor` to be a list of non-negative integers."""
    datatype: str
    raw: bytes | None = None
    data: Any = None


def _element_count(tensor: Tensor) -> int:
    shape = tensor.shape
    if not isinstance(shape, Sequence) or any(
        not isinstance(size, int) or isinstance(size, bool) or size < 0 for size in shape
    ):
        raise BadRequest(f"input '{tensor.name}' has shape {shape}: sizes must be non-negative integers")
    return math.prod(shape)


def dtype_of(*, name: str, datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype, or BadRequest naming input ``name`` and the known ones."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"input '{name}' has datatype {datatype!r}; known: {', '.join(DATATYPES)}")
    return dtype


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [element for item in data for element in _flatten(item)]
    return [data]


def check_tensor(tensor: Tensor) -> None:
    """The framing checks of the module docstring for one input; decodes no values."""
    count = _element_count(tensor)
    dtype = dtype_of(name=tensor.name, datatype=tensor.datatype)
    name, raw = tensor.name, tensor.raw
    if raw is None:
        carried = len(_flatten(tensor.data)) if tensor.data is not None else 0
        if carried != count:
            raise _count_mismatch(name, tensor.shape, carried)
    elif tensor.datatype == "BYTES":
        decode_bytes_tensor(raw, name=name, shape=tensor.shape)
    elif len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}' has shape {tensor.shape} ({_elements(count)} of {tensor.datatype}, "
            f"{count * dtype.itemsize} bytes) but {len(raw)} bytes were sent"
        )


def to_numpy(tensor: Tensor) -> np.ndarray:
    """A fixed-size tensor as an array of its datatype and shape; BYTES as an object array of bytes."""
    shape = list(tensor.shape)
    if tensor.datatype == "BYTES":  # bytes_elements checks the framing as it parses it
        return np.array(bytes_elements(tensor), dtype=object).reshape(shape)
    check_tensor(tensor)
    dtype = dtype_of(name=tensor.name, datatype=tensor.datatype)
    if tensor.raw is not None:
        return np.frombuffer(tensor.raw, dtype=dtype.newbyteorder("<")).reshape(shape)
    try:
        return np.asarray(_flatten(tensor.data), dtype=dtype).reshape(shape)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"input '{tensor.name}' data are not all {tensor.datatype} values") from None


def bytes_elements(tensor: Tensor) -> list[bytes]:
    """The elements of a BYTES tensor as bytes, in row-major order.

    Binary tensor data carries raw bytes; JSON carries strings, which for binary content must be
    base64 (JSON has no bytes type), so JSON strings are base64-decoded; gRPC ``bytes_contents``
    arrive as bytes.
    """
    if tensor.datatype != "BYTES":
        raise BadRequest(f"input '{tensor.name}' must be BYTES, got {tensor.datatype}")
    count = _element_count(tensor)
    if tensor.raw is not None:
        return decode_bytes_tensor(tensor.raw, name=tensor.name, shape=tensor.shape)
    elements = []
    for index, element in enumerate(_flatten(tensor.data) if tensor.data is not None else []):
        if isinstance(element, (bytes, bytearray)):
            elements.append(bytes(element))
            continue
        try:
            elements.append(base64.b64decode(element, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise BadRequest(
                f"input '{tensor.name}' element {index} is not base64: send binary data, or base64 in JSON"
            ) from None
    if len(elements) != count:
        raise _count_mismatch(tensor.name, tensor.shape, len(elements))
    return elements


def split_binary_body(
    body: bytes, *, json_length: int, key: str = "inputs"
) -> tuple[dict[str, Any], list[bytes | None]]:
    """A body of the binary tensor extension -> its JSON object and, for each tensor listed under
    ``key`` (``inputs`` of a request, ``outputs`` of a response), its binary bytes or None when
    the JSON carries its ``data``.

    ``body`` is ``json_length`` bytes of JSON followed by each binary tensor's bytes, in order;
    the JSON and the byte counts are checked here, each tensor's framing by :func:`check_tensor`.
    """
    if not 0 < json_length <= len(body):
        raise BadRequest(f"{BINARY_HEADER} is {json_length} but the body has {len(body)} bytes")
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request JSON is malformed: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get(key), list):
        raise BadRequest(f"request JSON must be an object with an '{key}' list")
    raws: list[bytes | None] = []
    offset = json_length
    for position, item in enumerate(header[key]):
        if not isinstance(item, dict) or not {"name", "shape", "datatype"} <= item.keys():
            raise BadRequest(f"{key[:-1]} {position} must have 'name', 'shape' and 'datatype'")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest(f"{key[:-1]} '{item['name']}' parameters must be an object")
        size = parameters.get("binary_data_size")
        if "data" in item:
            raws.append(None)
        elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            if offset + size > len(body):
                raise BadRequest(
                    f"{key[:-1]} '{item['name']}' declares {size} binary bytes but only {len(body) - offset} follow"
                )
            raws.append(body[offset : offset + size])
            offset += size
        else:
            raise BadRequest(f"{key[:-1]} '{item['name']}' has neither 'data' nor a binary_data_size parameter")
    if offset != len(body):
        raise BadRequest(f"{len(body) - offset} bytes follow the binary {key} that no {key[:-1]} declares")
    return header, raws


def binary_body(
    header: dict[str, Any], tensors: Sequence[tuple[str, str, np.ndarray]], *, key: str = "inputs"
) -> tuple[bytes, int]:
    """``header`` (a V2 request or answer, without its tensors) with ``tensors`` (name, datatype,
    value) under ``key`` as binary data, in the form :func:`split_binary_body` reads; and the
    JSON's length, for :data:`BINARY_HEADER`."""
    items, raws = [], []
    for name, datatype, value in tensors:
        raw = encode_bytes_tensor(value.ravel()) if datatype == "BYTES" else np.ascontiguousarray(value).tobytes()
        items.append({"name": name, "shape": list(value.shape), "datatype": datatype,
                      "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
        raws.append(raw)
    text = orjson.dumps({**header, key: items})
    return b"".join([text, *raws]), len(text)
