"""``audio_maas.protocol.codec``, read through ``audio_maas.kserve.tensors``: V2 tensors to numpy
and back, round trips for every datatype."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kserve import InferInput, InferRequest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from audio_maas.kserve.tensors import request_parameter, tensor
from audio_maas.protocol import codec
from audio_maas.protocol.codec import DATATYPES, decode_bytes_tensor, encode_bytes_tensor
from audio_maas.protocol.errors import BadRequest

FIXED_SIZE = [datatype for datatype in DATATYPES if datatype != "BYTES"]


@given(elements=st.lists(st.binary(max_size=300), max_size=20))
def test_bytes_tensors_round_trip(elements: list[bytes]) -> None:
    raw = encode_bytes_tensor(elements)
    assert decode_bytes_tensor(raw, name="x", shape=[len(elements)]) == elements
    assert len(raw) == sum(4 + len(element) for element in elements)


@pytest.mark.parametrize("datatype", FIXED_SIZE)
def test_fixed_size_tensors_round_trip_as_binary_and_as_json(datatype: str) -> None:
    dtype = DATATYPES[datatype]
    values = (np.arange(12) % 2 if datatype == "BOOL" else np.arange(12) - (0 if dtype.kind == "u" else 5)).astype(
        dtype
    )
    values = values.reshape(3, 4)
    binary = InferInput(name="x", shape=[3, 4], datatype=datatype)
    binary._raw_data = values.astype(dtype.newbyteorder("<")).tobytes()
    as_json = InferInput(name="x", shape=[3, 4], datatype=datatype, data=values.tolist())
    for infer_input in (binary, as_json):
        decoded = codec.to_numpy(tensor(infer_input))
        assert decoded.dtype == dtype and decoded.shape == (3, 4)
        np.testing.assert_array_equal(decoded, values)


def test_bytes_round_trip_as_binary_as_base64_json_and_as_grpc_bytes() -> None:
    elements = [b"\xff\xfe\x00RIFF", b"", bytes(range(256))]
    binary = InferInput(name="audio", shape=[3], datatype="BYTES")
    binary._raw_data = encode_bytes_tensor(elements)
    as_json = InferInput(
        name="audio", shape=[3], datatype="BYTES", data=[base64.b64encode(e).decode() for e in elements]
    )
    as_grpc_contents = InferInput(name="audio", shape=[3], datatype="BYTES", data=list(elements))
    for infer_input in (binary, as_json, as_grpc_contents):
        assert codec.bytes_elements(tensor(infer_input)) == elements
        assert codec.to_numpy(tensor(infer_input)).tolist() == elements


def test_json_values_of_another_type_are_named() -> None:
    with pytest.raises(BadRequest, match="input 'x' data are not all INT8 values"):
        codec.to_numpy(tensor(InferInput(name="x", shape=[2], datatype="INT8", data=["a", "b"])))


def test_the_contract_imports_nothing_heavy() -> None:
    """Every image, the client and training import it: TensorFlow, librosa or KServe must not come along."""
    heavy = "{'tensorflow', 'librosa', 'kserve'}"
    probe = f"import sys, audio_maas.protocol.contract; print(sorted({heavy} & set(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_grpc_parameters_of_every_type_of_the_protocol_are_read() -> None:
    """The official proto's double_param (field 4) and uint64_param (5), as tritonclient sends a
    float or a large integer, are not in KServe's copy of the proto; they are read all the same."""
    request = pb.ModelInferRequest()
    request.parameters["flag"].bool_param = True
    request.parameters["count"].int64_param = -3
    request.parameters["name"].string_param = "x"
    request.parameters["seconds"].MergeFromString(b"\x21" + struct.pack("<d", 0.12))
    request.parameters["big"].MergeFromString(b"\x28\x07")
    infer_request = InferRequest(model_name="m", infer_inputs=[], parameters=request.parameters)
    assert [request_parameter(infer_request, n) for n in ("flag", "count", "name", "seconds", "big", "absent")] == [
        True, -3, "x", 0.12, 7, None
    ]  # fmt: skip
