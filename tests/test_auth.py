"""The optional bearer token of the local service, on both protocols and both servers.

``audio-maas serve`` runs for real with ``AUDIO_MAAS_AUTH_TOKEN`` set, once per transformer to
predictor protocol: the transformer only becomes ready if it sends the token to the predictor.
Its log, captured at DEBUG, also shows what the servers say while they start.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from audio_maas.protocol.defaults import AUTH_TOKEN_ENV
from audio_maas.serving.settings import ServiceSettings
from tests.conftest import loopback_settings, running_service

TOKEN = "s3cret-token-for-tests"
REFUSED = {"error": f"the bearer token is missing: send 'Authorization: Bearer <{AUTH_TOKEN_ENV}>'"}
WRONG = {"error": f"the bearer token is wrong: send 'Authorization: Bearer <{AUTH_TOKEN_ENV}>'"}
GRPC_REFUSAL = f"the bearer token is missing or wrong: send metadata 'authorization: Bearer <{AUTH_TOKEN_ENV}>'"


@dataclass(frozen=True)
class GuardedService:
    local: ServiceSettings
    log: Path


@pytest.fixture(scope="module", params=["grpc-v2", "v2"])
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedService]:
    """``audio-maas serve`` with a token, logging at DEBUG into a file the tests read."""
    local = loopback_settings(predictor_protocol=request.param)
    env = {"KSERVE_LOGLEVEL": "DEBUG", AUTH_TOKEN_ENV: TOKEN}
    log = tmp_path_factory.mktemp("guarded") / "serve.log"
    with log.open("wb") as sink, running_service(local, env=env, output=sink):  # health checks need no token
        yield GuardedService(local=local, log=log)


def _recording_path(fsdd_dir: Path) -> Path:
    return fsdd_dir / "recordings" / "7_george_0.wav"


def _recording(fsdd_dir: Path) -> bytes:
    return _recording_path(fsdd_dir).read_bytes()


def _http_infer(url: str, data: bytes, headers: dict[str, str] | None) -> np.ndarray:
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    audio = triton_http.InferInput("audio", [1], "BYTES")
    audio.set_data_from_numpy(np.array([data], dtype=object), binary_data=True)
    try:
        return client.infer("digits", [audio], headers=headers).as_numpy("label")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("POST", "/v2/models/digits/infer", {}, REFUSED),
        ("POST", "/v2/models/digits/infer", {"Authorization": "Bearer not-the-token"}, WRONG),
        ("POST", "/v2/models/digits/infer", {"Authorization": f"Basic {TOKEN}"}, WRONG),
        ("POST", "/v2/models/digits/versions/1/infer", {}, REFUSED),
        ("GET", "/v2/models/digits", {}, REFUSED),
        ("GET", "/v2", {}, REFUSED),
        ("GET", "/metrics", {}, REFUSED),
        ("GET", "/docs", {}, REFUSED),
    ],
)
def test_requests_without_the_right_token_get_401_naming_the_problem_on_both_servers(
    guarded: GuardedService, method: str, path: str, headers: dict[str, str], expected: dict[str, str]
) -> None:
    for base in (guarded.local.url, f"http://127.0.0.1:{guarded.local.predictor_http_port}"):
        response = requests.request(method, f"{base}{path}", headers=headers, json={"inputs": []}, timeout=10)
        assert response.status_code == 401, (base, response.text)
        assert response.json() == expected
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "path",
    ["/", "/v2/health/live", "/v2/health/ready", "/v2/models/digits/ready", "/v2/models/digits/versions/1/ready"],
)
def test_health_checks_need_no_token(guarded: GuardedService, path: str) -> None:
    assert requests.get(f"{guarded.local.url}{path}", timeout=10).status_code == 200


def test_a_client_with_the_token_is_answered_after_refusals_and_the_log_never_holds_the_token(
    guarded: GuardedService, fsdd_dir: Path
) -> None:
    """Also: the transformer became ready, so it sent the token to the predictor (over gRPC
    metadata or a REST header, per the fixture's parameter)."""
    with pytest.raises(InferenceServerException, match="bearer token is missing"):
        _http_infer(guarded.local.url, _recording(fsdd_dir), headers=None)
    labels = _http_infer(guarded.local.url, _recording(fsdd_dir), headers={"Authorization": f"Bearer {TOKEN}"})
    assert labels.tolist() == [b"7"]
    log = guarded.log.read_text(errors="replace")
    assert "DEBUG" in log  # the level that would show the most
    assert TOKEN not in log


def test_answering_prints_no_python_warnings(guarded: GuardedService, fsdd_dir: Path) -> None:
    """Python warnings go to stderr on each server's first request, e.g. FastAPI's about KServe's
    code; no user can act on them, so none may reach the log."""
    labels = _http_infer(guarded.local.url, _recording(fsdd_dir), headers={"Authorization": f"Bearer {TOKEN}"})
    assert labels.tolist() == [b"7"]
    log = guarded.log.read_text(errors="replace")
    assert "Warning:" not in log


def test_startup_logs_name_the_device_and_each_not_ready_reason_once_without_tracebacks(
    guarded: GuardedService,
) -> None:
    log = guarded.log.read_text(errors="replace")
    assert "audio_maas.predictor.model INFO" in log and " on CPU (1 intra-op, 1 inter-op threads)" in log
    assert "Traceback" not in log  # KServe logs one per readiness probe and per refused predictor call
    reasons = [line.split("not ready:")[1] for line in log.splitlines() if "WARNING" in line and "not ready:" in line]
    assert len(reasons) == len(set(reasons))  # probes repeat every 0.2 s while the predictor loads
    assert "kserve.io.v2.models.digits.infer" not in log  # KServe's timing lines per request


def test_an_unauthenticated_client_cannot_make_the_server_read_a_body(guarded: GuardedService) -> None:
    """A declared 10 GB body without the token is refused at once with 401, not read (nor 413)."""
    connection = http.client.HTTPConnection("127.0.0.1", guarded.local.http_port, timeout=10)
    try:
        connection.putrequest("POST", "/v2/models/digits/infer")
        connection.putheader("Content-Length", str(10 * 2**30))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 401
    finally:
        connection.close()


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

token, audio_path, ports = sys.argv[1], sys.argv[2], sys.argv[3:]
good, bad = {"authorization": f"Bearer {token}"}, {"authorization": "Bearer not-the-token"}

def outcome(call):
    try:
        return call()
    except InferenceServerException as error:
        return [error.status(), error.message()]

report = {}
for port in ports:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    report[port] = {
        "live": outcome(lambda: client.is_server_live()),
        "model_ready": outcome(lambda: client.is_model_ready("digits")),
        "metadata_without": outcome(lambda: client.get_model_metadata("digits").name),
        "metadata_with": outcome(lambda: client.get_model_metadata("digits", headers=good).name),
    }
client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[0]}")
audio = grpcclient.InferInput("audio", [1], "BYTES")
audio.set_data_from_numpy(np.array([open(audio_path, "rb").read()], dtype=object))
report["infer_wrong"] = outcome(lambda: client.infer("digits", [audio], headers=bad).as_numpy("label").tolist())
report["infer_with"] = outcome(lambda: client.infer("digits", [audio], headers=good).as_numpy("label")[0].decode())
print(json.dumps(report))
"""


def test_grpc_calls_need_the_token_on_both_servers_but_health_checks_do_not(
    guarded: GuardedService, fsdd_dir: Path
) -> None:
    """tritonclient.grpc runs in its own process (see ``test_service``: its protobuf symbols and
    KServe's cannot share one)."""
    ports = [str(guarded.local.grpc_port), str(guarded.local.predictor_grpc_port)]
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, TOKEN, str(_recording_path(fsdd_dir)), *ports],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(completed.stdout)
    refused = ["StatusCode.UNAUTHENTICATED", GRPC_REFUSAL]
    for port in ports:
        assert report[port] == {
            "live": True,
            "model_ready": True,
            "metadata_without": refused,
            "metadata_with": "digits",
        }
    assert report["infer_wrong"] == refused
    assert report["infer_with"] == "7"


def test_audio_maas_predict_sends_the_token_from_the_environment(guarded: GuardedService, fsdd_dir: Path) -> None:
    command = [sys.executable, "-m", "audio_maas.cli", "predict", "--url", guarded.local.url]
    command.append(str(_recording_path(fsdd_dir)))
    without = subprocess.run(command, capture_output=True, text=True, env={**os.environ, AUTH_TOKEN_ENV: ""})
    assert without.returncode != 0 and "bearer token is missing" in without.stderr
    with_token = subprocess.run(command, capture_output=True, text=True, env={**os.environ, AUTH_TOKEN_ENV: TOKEN})
    assert with_token.returncode == 0, with_token.stderr
    assert with_token.stdout.split(":")[1].split()[0] == "7"


def test_a_live_stream_needs_the_token_and_listen_sends_it_from_the_environment(
    guarded: GuardedService, fsdd_dir: Path
) -> None:
    """``ModelStreamInfer`` is refused in our words without the token, as every other call is."""
    command = [sys.executable, "-m", "audio_maas.cli", "listen", "--url", f"127.0.0.1:{guarded.local.grpc_port}"]
    command.append(str(_recording_path(fsdd_dir)))
    environment = {key: value for key, value in os.environ.items() if key != AUTH_TOKEN_ENV}
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)
    assert refused.returncode == 2 and f"[StatusCode.UNAUTHENTICATED] {GRPC_REFUSAL}" in refused.stderr
    heard = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**environment, AUTH_TOKEN_ENV: TOKEN}
    )
    assert heard.returncode == 0, heard.stderr
    assert [line.split()[4] for line in heard.stdout.splitlines()] == ["7"]


def test_a_websocket_stream_needs_the_token(guarded: GuardedService) -> None:
    """The handshake is refused (403: a WebSocket's refusal has no body) without the token, and a
    stream goes on with it."""
    import asyncio

    import websockets

    url = f"ws://127.0.0.1:{guarded.local.http_port}/v2/models/digits/stream"
    piece = {"name": "waveform", "shape": [1, 800], "datatype": "FP32", "data": [0.0] * 800}
    silence = {"parameters": {"sample_rate": 8000, "sequence_end": True}, "inputs": [piece]}

    async def attempt(headers: dict[str, str] | None) -> Any:
        try:
            async with websockets.connect(url, additional_headers=headers) as socket:
                await socket.send(json.dumps(silence))
                return json.loads(await socket.recv())["parameters"]
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(attempt(None)) == 403
    assert asyncio.run(attempt({"authorization": "Bearer not-the-token"})) == 403
    assert asyncio.run(attempt({"authorization": f"Bearer {TOKEN}"})) == {"triton_final_response": True}


def test_openais_transcription_endpoint_needs_the_token(guarded: GuardedService, fsdd_dir: Path) -> None:
    """``POST /v1/audio/transcriptions`` is guarded as V2 is; with the token, a model that does
    not transcribe (``digits``) is refused naming the field, in OpenAI's shape."""
    url = f"{guarded.local.url}/v1/audio/transcriptions"
    form = {"data": {"model": "digits"}, "files": {"file": ("7.wav", _recording(fsdd_dir))}, "timeout": 30}
    refused = requests.post(url, **form)  # type: ignore[arg-type]
    assert refused.status_code == 401 and refused.json() == REFUSED
    answered = requests.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, **form)  # type: ignore[arg-type]
    assert answered.status_code == 400 and answered.json()["error"]["param"] == "model", answered.text
    assert TOKEN not in guarded.log.read_text()
