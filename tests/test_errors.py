"""Every bad request answered alike on both protocols, and none costs the next request.

Each case runs over REST with the binary tensor extension (as tritonclient sends it) and over
gRPC with ``raw_input_contents``, against the real ``audio-maas serve``: the REST status and the
gRPC code are the table's (``audio_maas.protocol.errors``), the message is the same on both, and it names
the problem. REST requests share one keep-alive connection, which must survive every answer.

gRPC requests are built with KServe's stubs generated from the Open Inference Protocol's proto
(wire-identical to any V2 client's): tritonclient.grpc cannot share a process with KServe's
protobuf module (see ``test_service``), and it will not send the lying framings tested here.
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from audio_maas.protocol.codec import encode_bytes_tensor
from audio_maas.serving.settings import ServiceSettings
from tests.conftest import encode, loopback_settings, running_service, tone

GOOD_WAV = encode(tone(frequency_hz=300, seconds=0.5, sample_rate=8000), sample_rate=8000, format="WAV")


def _wav_header(*, sample_rate: int, data_bytes: int) -> bytes:
    """A 44-byte mono 16-bit RIFF/WAVE header whose fields say what we ask."""
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    raw: bytes
    """The tensor's binary form, as sent: V2 framing for BYTES, little-endian values otherwise."""
    elements: list[Any] | None = None
    """The same elements for JSON ``data`` and gRPC typed ``contents``; None where they cannot
    say it (a lying framing, NaN, which JSON lacks)."""


def audio(*files: bytes, shape: list[int] | None = None) -> Tensor:
    shape = shape if shape is not None else [len(files)]
    return Tensor("audio", "BYTES", shape, encode_bytes_tensor(files), list(files))


def waveform(samples: np.ndarray, *, datatype: str = "FP32") -> Tensor:
    values = samples.reshape(-1).tolist() if np.isfinite(samples).all() else None
    return Tensor("waveform", datatype, list(samples.shape), samples.tobytes(), values)


@dataclass(frozen=True)
class Case:
    inputs: list[Tensor]
    message: str
    parameters: dict[str, Any] = field(default_factory=dict)
    http_status: int = 400
    grpc_code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    model: str = "digits"
    version: str = ""
    outputs: list[str] = field(default_factory=list)
    """Outputs the request asks for by name; none asks for every output."""
    typed_message: str | None = None
    """The message when the elements travel as JSON ``data`` or gRPC ``contents``, where it differs."""


SECOND = np.zeros((1, 8000), np.float32)
NAN_WAV = encode(np.array([0.0, np.nan, 0.1] * 100, np.float32), sample_rate=8000, format="WAV", subtype="FLOAT")
LONG_WAV = encode(np.zeros(8000 * 31, np.float32), sample_rate=8000, format="WAV", subtype="FLOAT")

CASES: dict[str, Case] = {
    "garbage bytes": Case(
        [audio(b"not audio at all")], "element 0: could not decode audio (16 bytes): Format not recognised."
    ),
    "an empty element": Case([audio(b"")], "element 0: audio is empty (0 bytes)"),
    "a truncated WAV header": Case(
        [audio(GOOD_WAV[:20])],
        "element 0: could not decode audio (20 bytes): Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk.",
    ),
    "a WAV header with a zero sample rate": Case(
        [audio(_wav_header(sample_rate=0, data_bytes=8) + bytes(8))],
        "element 0: could not decode audio (52 bytes): "
        "the header leaves its sample rate, channel count or format unset",
    ),
    "NaN samples in a file": Case([audio(NAN_WAV)], "element 0: audio contains NaN or infinite samples"),
    "a file over the duration limit": Case([audio(LONG_WAV)], "element 0: audio is longer than the maximum of 30 s"),
    "audio that is not BYTES": Case(
        [Tensor("audio", "FP32", [1], np.float32(1).tobytes())], "input 'audio' must be BYTES, got FP32"
    ),
    "audio of shape [N, 1]": Case([audio(GOOD_WAV, shape=[1, 1])], "input 'audio' must have shape [N], got [1, 1]"),
    "no elements": Case([audio(shape=[0])], "input 'audio' has no elements (shape [0])"),
    "too many elements": Case([audio(*[GOOD_WAV] * 65)], "input 'audio' has 65 elements, over the limit of 64"),
    "an unknown input": Case(
        [Tensor("speech", "BYTES", [1], encode_bytes_tensor([GOOD_WAV]))],
        "expected one input, 'audio' (BYTES) or 'waveform' (FP32), got ['speech']",
    ),
    "two inputs": Case(
        [audio(GOOD_WAV), waveform(SECOND)],
        "expected one input, 'audio' (BYTES) or 'waveform' (FP32), got ['audio', 'waveform']",
        parameters={"sample_rate": 8000},
    ),
    "an unknown datatype": Case(
        [Tensor("audio", "FP8", [1], b"\x00")],
        "input 'audio' has datatype 'FP8'; known: BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, "
        "INT64, FP16, FP32, FP64, BYTES",
    ),
    "a waveform without sample_rate": Case(
        [waveform(SECOND)],
        "input 'waveform' needs the request parameter 'sample_rate': a whole number of Hz from 1 to 768000, got None",
    ),
    "a zero sample_rate": Case(
        [waveform(SECOND)],
        "input 'waveform' needs the request parameter 'sample_rate': a whole number of Hz from 1 to 768000, got 0",
        parameters={"sample_rate": 0},
    ),
    "an absurd sample_rate": Case(
        [waveform(SECOND)],
        "input 'waveform' needs the request parameter 'sample_rate': a whole number of Hz from 1 to 768000, "
        "got 1000000000000",
        parameters={"sample_rate": 10**12},
    ),
    "a sample_rate that is a word": Case(
        [waveform(SECOND)],
        "input 'waveform' needs the request parameter 'sample_rate': a whole number of Hz from 1 to 768000, "
        "got 'fast'",
        parameters={"sample_rate": "fast"},
    ),
    "a NaN waveform": Case(
        [waveform(np.full((1, 800), np.nan, np.float32))],
        "element 0: audio contains NaN or infinite samples",
        parameters={"sample_rate": 8000},
    ),
    "an INT32 waveform": Case(
        [waveform(np.zeros((1, 800), np.int32), datatype="INT32")],
        "input 'waveform' must be FP32 (or INT16 PCM), got INT32",
        parameters={"sample_rate": 8000},
    ),
    "a waveform of shape [samples]": Case(
        [waveform(np.zeros(800, np.float32))],
        "input 'waveform' must have shape [N, samples], got [800]",
        parameters={"sample_rate": 8000},
    ),
    # Lying framing: KServe's own helpers answer these 500 and reset the connection.
    "a length prefix past the end": Case(
        [Tensor("audio", "BYTES", [1], struct.pack("<I", 10**9) + b"0123456789")],
        "input 'audio' element 0 declares 1000000000 bytes but only 10 follow",
    ),
    "more elements than the shape": Case(
        [audio(GOOD_WAV, GOOD_WAV, shape=[1])],
        "input 'audio' has shape [1] (1 element) but more bytes follow",
        typed_message="input 'audio' has shape [1] (1 element) but carries 2",
    ),
    "fewer elements than the shape": Case(
        [audio(GOOD_WAV, shape=[3])], "input 'audio' has shape [3] (3 elements) but carries 1"
    ),
    "a cut length prefix": Case(
        [Tensor("audio", "BYTES", [1], b"\x05\x00")],
        "input 'audio' element 0: 2 byte(s) left, too few for its 4-byte length",
    ),
    "FP32 bytes that are not whole values": Case(
        [Tensor("waveform", "FP32", [1, 2], bytes(7))],
        "input 'waveform' has shape [1, 2] (2 elements of FP32, 8 bytes) but 7 bytes were sent",
        parameters={"sample_rate": 8000},
    ),
    "a negative size in the shape": Case(
        [audio(GOOD_WAV, shape=[-1])], "input 'audio' has shape [-1]: sizes must be non-negative integers"
    ),
    "an output the model does not have": Case(
        [audio(GOOD_WAV)],
        "model 'digits' has no output 'spectrogram'; "
        "its outputs are label, class_id, probabilities, sequence, segments, saliency, saliency_frame_s",
        outputs=["spectrogram"],
    ),
    "an unknown model": Case(
        [audio(GOOD_WAV)], "Model with name nope does not exist.", http_status=404,
        grpc_code=grpc.StatusCode.NOT_FOUND, model="nope",
    ),
    "an unknown version": Case(
        [audio(GOOD_WAV)], "model 'digits' has no version '2'; this server has version '1'", http_status=404,
        grpc_code=grpc.StatusCode.NOT_FOUND, version="2",
    ),
}  # fmt: skip


class RestClient:
    """One keep-alive HTTP/1.1 connection; a request that loses it fails the test."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def infer(self, case: Case) -> tuple[int, dict[str, Any]]:
        inputs = [
            {"name": t.name, "shape": t.shape, "datatype": t.datatype, "parameters": {"binary_data_size": len(t.raw)}}
            for t in case.inputs
        ]
        outputs = [{"name": name} for name in case.outputs]
        header = json.dumps({"inputs": inputs, "outputs": outputs, "parameters": case.parameters}).encode()
        path = f"/v2/models/{case.model}" + (f"/versions/{case.version}" if case.version else "") + "/infer"
        return self.post(path, header + b"".join(t.raw for t in case.inputs), json_length=len(header))

    def post(self, path: str, body: bytes, *, json_length: int) -> tuple[int, dict[str, Any]]:
        socket_before = self.connection.sock
        headers = {"Inference-Header-Content-Length": str(json_length), "Content-Type": "application/octet-stream"}
        self.connection.request("POST", path, body=body, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        assert response.getheader("connection", "").lower() != "close", "the server closed the connection"
        assert socket_before is None or self.connection.sock is socket_before, "the connection was replaced"
        assert self.connection.sock is not None, "the connection was lost"
        return response.status, json.loads(answer[: int(response.getheader(_JSON_LENGTH) or len(answer))])


_JSON_LENGTH = "Inference-Header-Content-Length"


def json_body(case: Case) -> dict[str, Any]:
    """``case`` as a V2 JSON body: BYTES elements in base64, numbers as numbers."""

    def data(tensor: Tensor) -> list[Any]:
        assert tensor.elements is not None
        if tensor.datatype == "BYTES":
            return [base64.b64encode(element).decode() for element in tensor.elements]
        return tensor.elements

    inputs = [{"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": data(t)} for t in case.inputs]
    return {"inputs": inputs, "outputs": [{"name": name} for name in case.outputs], "parameters": case.parameters}


_TYPED_CONTENTS = {"BYTES": "bytes_contents", "FP32": "fp32_contents", "INT16": "int_contents", "INT32": "int_contents"}


def grpc_typed_request(case: Case) -> pb.ModelInferRequest:
    """``case`` with gRPC's typed ``contents`` instead of ``raw_input_contents``."""
    request = grpc_request(case)
    del request.raw_input_contents[:]
    for tensor, message in zip(case.inputs, request.inputs, strict=True):
        getattr(message.contents, _TYPED_CONTENTS[tensor.datatype]).extend(tensor.elements or [])
    return request


def grpc_request(case: Case) -> pb.ModelInferRequest:
    parameters = {name: _grpc_parameter(value) for name, value in case.parameters.items()}
    return pb.ModelInferRequest(
        model_name=case.model,
        model_version=case.version,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in case.inputs
        ],
        raw_input_contents=[t.raw for t in case.inputs],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in case.outputs],
        parameters=parameters,
    )


def _grpc_parameter(value: bool | int | str) -> pb.InferParameter:
    """KServe's proto has bool, int64 and string parameters (the protocol's double is missing)."""
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    return pb.InferParameter(string_param=value)


@pytest.fixture(scope="module")
def rest(service: ServiceSettings) -> Iterator[RestClient]:
    client = RestClient(service.http_port)
    yield client
    client.connection.close()


@pytest.fixture(scope="module")
def grpc_stub(service: ServiceSettings) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _grpc_outcome(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=60)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def _good_request_answers(rest: RestClient) -> None:
    status, answer = rest.infer(Case([audio(GOOD_WAV)], ""))
    assert status == 200 and answer["outputs"][0]["name"] == "label", answer


@pytest.mark.parametrize("name", CASES)
def test_rest_answers_the_tables_status_and_the_next_request_on_the_connection_too(rest: RestClient, name: str) -> None:
    case = CASES[name]
    assert rest.infer(case) == (case.http_status, {"error": case.message})
    _good_request_answers(rest)


@pytest.mark.parametrize("name", CASES)
def test_grpc_answers_the_tables_code_with_the_rest_message(
    grpc_stub: pb_grpc.GRPCInferenceServiceStub, name: str
) -> None:
    case = CASES[name]
    assert _grpc_outcome(grpc_stub.ModelInfer, grpc_request(case)) == (case.grpc_code, case.message)
    good = pb.ModelInferRequest(
        model_name="digits",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="audio", datatype="BYTES", shape=[1])],
        raw_input_contents=[encode_bytes_tensor([GOOD_WAV])],
    )
    assert _grpc_outcome(grpc_stub.ModelInfer, good) == (grpc.StatusCode.OK, "")


TYPED_CASES = [name for name, case in CASES.items() if all(t.elements is not None for t in case.inputs)]


@pytest.mark.parametrize("name", TYPED_CASES)
def test_json_data_and_grpc_contents_answer_as_binary_tensors_do(
    service: ServiceSettings, grpc_stub: pb_grpc.GRPCInferenceServiceStub, name: str
) -> None:
    """The same cases with their elements in JSON ``data`` (BYTES in base64) and in gRPC's typed
    ``contents``: the other two ways V2 clients send tensors."""
    case = CASES[name]
    message = case.typed_message or case.message
    path = f"/v2/models/{case.model}" + (f"/versions/{case.version}" if case.version else "") + "/infer"
    response = requests.post(f"{service.url}{path}", json=json_body(case), timeout=60)
    assert (response.status_code, response.json()) == (case.http_status, {"error": message})
    assert _grpc_outcome(grpc_stub.ModelInfer, grpc_typed_request(case)) == (case.grpc_code, message)


def test_base64_that_is_not_base64_is_named(service: ServiceSettings) -> None:
    """JSON alone carries BYTES as text; gRPC and binary REST carry bytes, so this case is REST's."""
    body = {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}
    response = requests.post(f"{service.url}/v2/models/digits/infer", json=body, timeout=60)
    error = "input 'audio' element 0 is not base64: send binary data, or base64 in JSON"
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_a_message_over_the_body_limit_is_resource_exhausted_over_grpc(
    grpc_stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    """REST answers 413 for the same size (``test_service``): one limit, ``max_body_bytes``."""
    code, details = _grpc_outcome(grpc_stub.ModelInfer, grpc_request(Case([audio(bytes(33 * 2**20))], "")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"vs. {32 * 2**20})" in details


def test_the_predictor_answers_its_own_bad_requests_alike_on_both_protocols(service: ServiceSettings) -> None:
    """The predictor's errors come from the same table: a client that calls it directly (a user's
    own transformer) hears what is wrong, over either protocol."""
    rest = RestClient(service.predictor_http_port)
    infinite = np.full((1, 101, 40), np.inf, np.float32).tobytes()
    cases = [
        Case(
            [Tensor("features", "FP32", [1, 50, 40], bytes(50 * 40 * 4))],
            "input 'features' of model 'digits' must have shape [N, 101, 40], got [1, 50, 40]",
        ),
        Case([Tensor("features", "FP32", [1, 101, 40], infinite)], "input 'features' contains NaN or infinite values"),
        Case(
            [Tensor("features", "FP32", [1, 101, 40], bytes(101 * 40 * 4 - 1))],
            "input 'features' has shape [1, 101, 40] (4040 elements of FP32, 16160 bytes) but 16159 bytes were sent",
        ),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{service.predictor_grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for case in cases:
            assert rest.infer(case) == (400, {"error": case.message})
            outcome = _grpc_outcome(stub.ModelInfer, grpc_request(case))
            assert outcome == (grpc.StatusCode.INVALID_ARGUMENT, case.message)
    rest.connection.close()


_FRAMED_BODY = st.tuples(
    st.lists(st.integers(min_value=-2, max_value=4), min_size=0, max_size=3),  # the shape
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=64)),  # prefix, then bytes
        max_size=4,
    ),
    st.binary(max_size=6),  # a tail
    st.sampled_from(["BYTES", "FP32", "INT16", "BOOL"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_FRAMED_BODY)
def test_fuzzed_framing_never_answers_5xx_nor_costs_the_connection(
    rest: RestClient, grpc_stub: pb_grpc.GRPCInferenceServiceStub, body: tuple[list[int], list[Any], bytes, str]
) -> None:
    shape, elements, tail, datatype = body
    raw = b"".join(struct.pack("<I", prefix) + data for prefix, data in elements) + tail
    case = Case([Tensor("audio" if datatype == "BYTES" else "waveform", datatype, shape, raw)], "",
                parameters={"sample_rate": 8000})  # fmt: skip
    status, answer = rest.infer(case)
    assert status == 400 and answer["error"], answer
    code, details = _grpc_outcome(grpc_stub.ModelInfer, grpc_request(case))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, answer["error"])


def test_a_clients_mistake_logs_no_traceback(tmp_path: Path) -> None:
    """Bad requests over both protocols leave one access line each and no traceback; the log is
    read at DEBUG, KServe's most verbose, where its own handlers would log every one with one."""
    settings_ = loopback_settings()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink, running_service(settings_, env={"KSERVE_LOGLEVEL": "DEBUG"}, output=sink):
        client = RestClient(settings_.http_port)
        with grpc.insecure_channel(f"127.0.0.1:{settings_.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for name in ("garbage bytes", "a length prefix past the end", "an unknown model", "a zero sample_rate"):
                assert client.infer(CASES[name])[0] != 200
                assert _grpc_outcome(stub.ModelInfer, grpc_request(CASES[name]))[0] != grpc.StatusCode.OK
        client.connection.close()
    logs = log.read_text()
    assert "Traceback" not in logs and "Exception in ASGI application" not in logs
    assert logs.count('"POST /v2/models/') >= 4  # the requests did reach the server and its log
