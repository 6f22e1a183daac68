"""The serving parts on their own: dynamic batching, V2 binary request decoding, where the
transformer featurises."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.kserve.settings import parse_flags
from audio_maas.kserve.tensors import parse_rest_request, tensor
from audio_maas.kserve.upstream import PredictorClient
from audio_maas.predictor.settings import PredictorSettings
from audio_maas.protocol.codec import Tensor, bytes_elements, encode_bytes_tensor
from audio_maas.protocol.contract import AUDIO_INPUT
from audio_maas.protocol.defaults import AUTH_TOKEN_ENV
from audio_maas.protocol.errors import BadRequest
from audio_maas.protocol.messages import Request
from audio_maas.serving.batching import DynamicBatcher
from audio_maas.transformer.settings import TransformerSettings
from audio_maas.transformer.stages import Stages
from tests.conftest import BUNDLED_MODEL


def _binary_request(inputs: list[tuple[dict, bytes]]) -> tuple[bytes, int]:
    header = json.dumps({"id": "r1", "inputs": [spec for spec, _ in inputs]}).encode()
    return header + b"".join(raw for _, raw in inputs), len(header)


def _bytes_tensor(*elements: bytes) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def test_binary_bytes_inputs_keep_their_raw_bytes() -> None:
    """Regression: KServe 0.21's InferRequest.from_bytes fails on BYTES that are not UTF-8."""
    audio = [b"\xff\xfe\x00RIFF", bytes(range(256))]
    raw = _bytes_tensor(*audio)
    body, json_length = _binary_request(
        [({"name": "audio", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}, raw)]
    )
    request = parse_rest_request(body, json_length=json_length, model_name="digits")
    assert request.id == "r1"
    assert bytes_elements(tensor(request.inputs[0])) == audio


def test_binary_fp32_inputs_decode_to_their_values() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, json_length = _binary_request(
        [({"name": "w", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}}, values.tobytes())]
    )
    request = parse_rest_request(body, json_length=json_length, model_name="m")
    np.testing.assert_array_equal(request.inputs[0].as_numpy().reshape(2, 3), values)


@pytest.mark.parametrize(
    ("declared", "tail", "message"),
    [
        (10, b"12345", "declares 10 binary bytes but only 5 follow"),
        (2, b"12345", "3 bytes follow the binary inputs that no input declares"),
    ],
)
def test_binary_sizes_must_add_up(declared: int, tail: bytes, message: str) -> None:
    body, json_length = _binary_request(
        [({"name": "a", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": declared}}, tail)]
    )
    with pytest.raises(BadRequest, match=message):
        parse_rest_request(body, json_length=json_length, model_name="m")


@pytest.mark.parametrize(
    ("body", "json_length", "message"),
    [
        (b"{}", 99, "is 99 but the body has 2 bytes"),
        (b"{oops", 5, "request JSON is malformed"),
        (b'{"inputs": 3}', 13, "must be an object with an 'inputs' list"),
        (b'{"inputs": [{"name": "a"}]}', 27, "input 0 must have 'name', 'shape' and 'datatype'"),
    ],
)
def test_malformed_binary_requests_are_bad_requests(body: bytes, json_length: int, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_rest_request(body, json_length=json_length, model_name="m")


def test_json_bytes_elements_are_base64() -> None:
    infer_input = InferInput(name="audio", shape=[2], datatype="BYTES", data=["AAEC", "/w=="])
    assert bytes_elements(tensor(infer_input)) == [b"\x00\x01\x02", b"\xff"]
    with pytest.raises(BadRequest, match="element 1 is not base64"):
        bytes_elements(tensor(InferInput(name="audio", shape=[2], datatype="BYTES", data=["AAEC", "*"])))


def test_batcher_stacks_concurrent_requests_and_returns_each_its_rows() -> None:
    calls: list[int] = []

    async def double(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return rows * 2

    async def scenario() -> list[np.ndarray]:
        batcher = DynamicBatcher(double, max_batch_size=8, max_wait_s=0.05)
        requests = [np.full((n, 3), i, np.float32) for i, n in enumerate([1, 2, 3, 1])]
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    results = asyncio.run(scenario())
    assert calls == [7]  # four requests, one model call
    for i, (n, result) in enumerate(zip([1, 2, 3, 1], results, strict=True)):
        np.testing.assert_array_equal(result, np.full((n, 3), 2 * i, np.float32))


def test_batcher_never_exceeds_the_maximum_batch_size_and_keeps_requests_whole() -> None:
    calls: list[int] = []

    async def identity(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return rows

    async def scenario() -> list[np.ndarray]:
        batcher = DynamicBatcher(identity, max_batch_size=4, max_wait_s=0.05)
        return await asyncio.gather(*(batcher.submit(np.full((3, 1), i, np.float32)) for i in range(4)))

    results = asyncio.run(scenario())
    assert calls == [3, 3, 3, 3]
    assert [int(r[0, 0]) for r in results] == [0, 1, 2, 3]


def test_a_request_of_more_rows_than_a_batch_goes_in_calls_of_at_most_a_batch_and_comes_back_in_order() -> None:
    calls: list[int] = []

    async def negate(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return -rows

    rows = np.arange(10, dtype=np.float32)[:, None]
    result = asyncio.run(DynamicBatcher(negate, max_batch_size=4).submit(rows))
    assert max(calls) <= 4 and sum(calls) == 10
    np.testing.assert_array_equal(result, -rows)


def test_an_answer_of_several_arrays_is_split_among_the_callers_alike() -> None:
    """As the predictor answers an explanation: probabilities and saliency for the same rows."""

    async def negate_and_double(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        return -rows, np.repeat(2 * rows, 3, axis=1)

    async def scenario() -> list[tuple[np.ndarray, ...]]:
        batcher = DynamicBatcher(negate_and_double, max_batch_size=4, max_wait_s=0.05)
        requests = [np.full((n, 1), i, np.float32) for i, n in enumerate([1, 2, 6])]  # the last is split
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    for i, (n, (negated, doubled)) in enumerate(zip([1, 2, 6], asyncio.run(scenario()), strict=True)):
        np.testing.assert_array_equal(negated, np.full((n, 1), -i, np.float32))
        np.testing.assert_array_equal(doubled, np.full((n, 3), 2 * i, np.float32))


def test_an_idle_batcher_runs_at_once_and_batches_what_arrives_meanwhile() -> None:
    """With no wait, the first request does not wait for company; the next batch gathers while it runs."""
    calls: list[int] = []
    running, release = asyncio.Event(), asyncio.Event()

    async def held_identity(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        running.set()
        await release.wait()  # the model is busy until the test says otherwise
        return rows

    async def scenario() -> None:
        batcher = DynamicBatcher(held_identity, max_batch_size=8)
        first = asyncio.ensure_future(batcher.submit(np.zeros((1, 1), np.float32)))
        await running.wait()  # the lone request runs at once: no batch to fill, no wait
        assert calls == [1]
        rest = asyncio.ensure_future(
            asyncio.gather(*(batcher.submit(np.full((1, 1), i, np.float32)) for i in range(3)))
        )
        await asyncio.sleep(0)  # let the three queue up behind the busy model
        release.set()
        await first
        results = await rest
        assert [int(r[0, 0]) for r in results] == [0, 1, 2]

    asyncio.run(scenario())
    assert calls == [1, 3]  # the three that came while the model was busy went in one call


def test_a_failing_model_call_fails_every_request_in_its_batch_and_the_batcher_goes_on() -> None:
    async def fail_on_negative(rows: np.ndarray) -> np.ndarray:
        if (rows < 0).any():
            raise ValueError("negative input")
        return rows

    async def scenario() -> tuple[list[object], np.ndarray]:
        batcher = DynamicBatcher(fail_on_negative, max_batch_size=8, max_wait_s=0.05)
        failed = await asyncio.gather(
            batcher.submit(np.ones((1, 1), np.float32)), batcher.submit(-np.ones((1, 1), np.float32)),
            return_exceptions=True,
        )  # fmt: skip
        return failed, await batcher.submit(np.ones((2, 1), np.float32))

    failed, after = asyncio.run(scenario())
    assert all(isinstance(outcome, ValueError) for outcome in failed)
    np.testing.assert_array_equal(after, np.ones((2, 1), np.float32))


@pytest.mark.parametrize(("size", "wait", "message"), [(0, 0.01, "max_batch_size"), (4, -1, "max_wait_s")])
def test_batcher_settings_are_checked(size: int, wait: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DynamicBatcher(asyncio.sleep, max_batch_size=size, max_wait_s=wait)


def test_the_token_is_never_a_command_line_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every user of a machine can read command lines in ``ps``; the token comes from the environment."""
    monkeypatch.setenv(AUTH_TOKEN_ENV, "s3cret")
    _, settings = parse_flags(PredictorSettings, description=None, argv=["--model_name", "digits"])
    assert settings.auth_token is not None and settings.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    with pytest.raises(SystemExit):
        parse_flags(PredictorSettings, description=None, argv=["--auth_token", "s3cret"])
    assert "is not accepted on the command line; set AUDIO_MAAS_AUTH_TOKEN instead" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"inputs": [], "parameters": 5}, "request 'parameters' must be an object and 'id' a string"),
        ({"inputs": [], "id": 7}, "request 'parameters' must be an object and 'id' a string"),
        ({"inputs": [], "outputs": [{"name": "label", "parameters": []}]}, "request 'outputs' must be a list"),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "parameters": 3}]},
            "parameters must be an object",
        ),
    ],
)
def test_binary_request_headers_of_the_wrong_type_are_bad_requests(header: dict, message: str) -> None:
    body = json.dumps(header).encode()
    with pytest.raises(BadRequest, match=re.escape(message)):
        parse_rest_request(body, json_length=len(body), model_name="m")


@pytest.mark.parametrize(("inline_max_bytes", "on_the_loop"), [(32 * 1024, True), (1000, False), (0, False)])
def test_small_requests_are_featurised_on_the_event_loop_and_large_ones_on_the_feature_threads(
    fsdd_dir: Path, inline_max_bytes: int, on_the_loop: bool
) -> None:
    """Where a request's elements are featurised (``Stages.featurise``) follows
    ``inline_features_max_bytes``: one FSDD file (about 5 KB), no predictor called."""
    data = sorted((fsdd_dir / "recordings").glob("*.wav"))[0].read_bytes()
    assert 1000 < len(data) <= 32 * 1024
    settings = TransformerSettings(model_dir=BUNDLED_MODEL, inline_features_max_bytes=inline_max_bytes)
    unused = PredictorClient(host="127.0.0.1:9", protocol="grpc-v2", use_ssl=False, timeout_s=1, auth_token=None)
    stages = Stages("digits", settings, unused)
    front_end = FrontEnd(FeatureSpec.read(BUNDLED_MODEL))
    threads: list[threading.Thread] = []

    def featurise(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        threads.append(threading.current_thread())
        return front_end.from_waveform(waveform=waveform, sample_rate=sample_rate)

    request = Request(inputs=[Tensor(AUDIO_INPUT, [1], "BYTES", raw=encode_bytes_tensor([data]))])
    try:
        (features,) = asyncio.run(stages.featurise(request, featurise, "features"))
    finally:
        stages.close()
    assert (threads[0] is threading.main_thread()) == on_the_loop
    np.testing.assert_array_equal(features, front_end.from_bytes(data=data, max_duration_s=60))
