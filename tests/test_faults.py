"""Faults between the real processes: the predictor away, and the local service stopping."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import requests

from audio_maas.protocol.model_dir import FEATURE_SPEC_FILE, LABELS_FILE
from tests.conftest import BUNDLED_MODEL, encode, free_port_pair, tone, wait_ready

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _audio_request() -> dict:
    import base64

    wav = encode(tone(frequency_hz=300, seconds=0.3, sample_rate=8000), sample_rate=8000, format="WAV")
    return {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(wav).decode()]}]}


def _start_predictor(port: int, model_dir: Path = BUNDLED_MODEL, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "audio_maas.predictor", "--model_name", "digits", "--model_dir", str(model_dir),
         "--http_port", str(port), "--grpc_port", str(port + 1), *extra],
        env=ENV,
    )  # fmt: skip


def _start_transformer(
    port: int, predictor_port: int, model_dir: Path = BUNDLED_MODEL, log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """The transformer over REST (``v2``); the service fixture covers ``grpc-v2``."""
    return subprocess.Popen(
        [sys.executable, "-m", "audio_maas.transformer", "--model_name", "digits", "--model_dir", str(model_dir),
         "--http_port", str(port), "--grpc_port", str(port + 1),
         "--predictor_host", f"127.0.0.1:{predictor_port}", "--predictor_protocol", "v2"],
        env=ENV, stderr=log,
    )  # fmt: skip


def _stays_unready(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if requests.get(url, timeout=5).status_code == 200:
            return False
        time.sleep(0.25)
    return True


def _stop(*processes: subprocess.Popen[bytes] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def test_transformer_waits_for_its_predictor_answers_503_while_it_is_away_and_recovers() -> None:
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    base = f"http://127.0.0.1:{transformer_port}/v2/models/digits"
    transformer = _start_transformer(transformer_port, predictor_port)
    predictor = None
    try:
        wait_ready(f"http://127.0.0.1:{transformer_port}/v2/health/live", process=transformer)
        assert _stays_unready(f"{base}/ready", seconds=2)  # no predictor: not ready
        assert requests.post(f"{base}/infer", json=_audio_request(), timeout=30).status_code == 503

        predictor = _start_predictor(predictor_port)
        wait_ready(f"{base}/ready", process=transformer)
        assert requests.post(f"{base}/infer", json=_audio_request(), timeout=30).status_code == 200

        predictor.kill()  # gone without a goodbye, as on a node failure
        predictor.wait(timeout=30)
        # A refused connection is answered at once, not after a connect timeout: a slow answer
        # raises ReadTimeout here instead of failing a timing assert.
        response = requests.post(f"{base}/infer", json=_audio_request(), timeout=5)
        assert response.status_code == 503
        assert response.json()["error"].startswith(f"predictor 127.0.0.1:{predictor_port} is unreachable")

        predictor = _start_predictor(predictor_port)
        wait_ready(f"http://127.0.0.1:{predictor_port}/v2/models/digits/ready", process=predictor)
        response = requests.post(f"{base}/infer", json=_audio_request(), timeout=30)
        assert response.status_code == 200, response.text
    finally:
        _stop(transformer, predictor)


@pytest.mark.parametrize(
    ("file", "edit", "reason"),
    [
        (FEATURE_SPEC_FILE, lambda spec: spec.replace('"n_mels": 40', '"n_mels": 32'), "did not take a probe"),
        (LABELS_FILE, lambda labels: "\n".join(labels.split()[:9]) + "\n", "serve different models"),
    ],
)
def test_transformer_stays_unready_when_its_model_files_disagree_with_the_predictor(
    tmp_path: Path, file: str, edit: Callable[[str], str], reason: str
) -> None:
    """A transformer given another model's spec or labels must not serve answers computed wrongly."""
    model_dir = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, model_dir)
    edited = edit((model_dir / file).read_text())
    assert edited != (model_dir / file).read_text()
    (model_dir / file).write_text(edited)
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    log_path = tmp_path / "transformer.log"
    predictor = _start_predictor(predictor_port)
    with log_path.open("wb") as log:
        transformer = _start_transformer(transformer_port, predictor_port, model_dir=model_dir, log=log)
        try:
            wait_ready(f"http://127.0.0.1:{predictor_port}/v2/models/digits/ready", process=predictor)
            base = f"http://127.0.0.1:{transformer_port}/v2/models/digits"
            wait_ready(f"http://127.0.0.1:{transformer_port}/v2/health/live", process=transformer)
            assert _stays_unready(f"{base}/ready", seconds=3)
            assert requests.post(f"{base}/infer", json=_audio_request(), timeout=30).status_code == 503
        finally:
            _stop(transformer, predictor)
    assert reason in log_path.read_text()


def _relabelled_copy(tmp_path: Path) -> Path:
    """The bundled model with two labels swapped: same shapes, same count, other answers."""
    model_dir = tmp_path / "relabelled"
    shutil.copytree(BUNDLED_MODEL, model_dir)
    labels = (model_dir / LABELS_FILE).read_text().split()
    labels[0], labels[1] = labels[1], labels[0]
    (model_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))
    return model_dir


@pytest.mark.slow
def test_transformer_refuses_a_predictor_of_another_model_with_the_same_shapes(tmp_path: Path) -> None:
    """Shapes and label counts agree, so only the model fingerprint tells: at start the transformer
    stays unready; when its predictor is replaced by another model's (a rollout pairing revisions
    of two models), every request is a 503 that says so, never a wrong label."""
    relabelled = _relabelled_copy(tmp_path)
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    base = f"http://127.0.0.1:{transformer_port}/v2/models/digits"
    log_path = tmp_path / "transformer.log"
    predictor = _start_predictor(predictor_port, relabelled)
    with log_path.open("wb") as log:
        transformer = _start_transformer(transformer_port, predictor_port, log=log)
        try:
            wait_ready(f"http://127.0.0.1:{predictor_port}/v2/models/digits/ready", process=predictor)
            wait_ready(f"http://127.0.0.1:{transformer_port}/v2/health/live", process=transformer)
            assert _stays_unready(f"{base}/ready", seconds=3)
            assert "transformer and predictor serve different models" in log_path.read_text()

            _stop(predictor)  # the right model comes: ready
            predictor = _start_predictor(predictor_port)
            wait_ready(f"{base}/ready", process=transformer)
            assert requests.post(f"{base}/infer", json=_audio_request(), timeout=30).status_code == 200

            _stop(predictor)  # and another model's predictor takes its place
            predictor = _start_predictor(predictor_port, relabelled)
            wait_ready(f"http://127.0.0.1:{predictor_port}/v2/models/digits/ready", process=predictor)
            response = requests.post(f"{base}/infer", json=_audio_request(), timeout=30)
            assert response.status_code == 503
            assert f"predictor 127.0.0.1:{predictor_port} answered 409" in response.json()["error"]
            assert "transformer and predictor serve different models" in response.json()["error"]
        finally:
            _stop(transformer, predictor)


def test_serve_is_ready_quickly_and_sigterm_stops_both_servers() -> None:
    http_port, predictor_port = free_port_pair(), free_port_pair()
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "audio_maas.cli", "serve", "--http-port", str(http_port),
         "--predictor-port", str(predictor_port)],
        env=ENV,
    )  # fmt: skip
    try:
        for port in (predictor_port, http_port):
            wait_ready(f"http://127.0.0.1:{port}/v2/models/digits/ready", process=serve)
        print(f"serve ready in {time.monotonic() - started:.1f} s")
        assert requests.post(
            f"http://127.0.0.1:{http_port}/v2/models/digits/infer", json=_audio_request(), timeout=30
        ).ok
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    finally:
        if serve.poll() is None:  # SIGTERM, so that serve stops its two servers too
            serve.terminate()
            serve.wait(timeout=30)
    for port in (http_port, predictor_port):
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)
        except requests.ConnectionError:
            continue
        raise AssertionError(f"a server still listens on {port} after serve stopped")


def test_no_audio_reaches_logs_or_disk_even_at_debug_level(tmp_path: Path) -> None:
    """Requests carry a recognisable payload, valid and broken, in binary and base64 JSON; the most
    verbose logs of both servers must contain none of it, and neither server writes a file."""
    marker = b"PRIVATE-VOICE-" * 64
    waveform = np.frombuffer(marker * 8, dtype=np.int16).astype(np.float32) / 32768
    wav = encode(0.5 * np.tanh(waveform), sample_rate=8000, format="WAV")
    broken = b"RIFF" + marker
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    env = {**ENV, "KSERVE_LOGLEVEL": "DEBUG", "TMPDIR": str(temp)}
    http_port, predictor_port = free_port_pair(), free_port_pair()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "audio_maas.cli", "serve", "--http-port", str(http_port),
             "--predictor-port", str(predictor_port)],
            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{http_port}/v2/models/digits"
            wait_ready(f"{url}/ready", process=serve)
            for data in (wav, broken):
                body = {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES",
                                    "data": [base64.b64encode(data).decode()]}]}  # fmt: skip
                requests.post(f"{url}/infer", json=body, timeout=30)
                raw = len(data).to_bytes(4, "little") + data
                header = json.dumps({"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES",
                                                 "parameters": {"binary_data_size": len(raw)}}]}).encode()  # fmt: skip
                answer = requests.post(
                    f"{url}/infer", data=header + raw, timeout=30,
                    headers={"inference-header-content-length": str(len(header))},
                )  # fmt: skip
                assert answer.status_code in (200, 400)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=30)
    logs = log_path.read_bytes()
    assert b"DEBUG [model.py:infer" in logs  # the level took effect, in our code too
    for secret in (b"PRIVATE-VOICE", base64.b64encode(marker[:48]), base64.b64encode(wav[44:92])):
        assert secret not in logs
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []


@contextmanager
def _requests_held_in_flight(
    count: int,
) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str, list[Future[requests.Response]]]]:
    """Both servers, with ``count`` requests sent and surely in flight: the predictor holds each
    batch open for 1 s. Yields (transformer, predictor, model URL, the requests' futures)."""
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    predictor = _start_predictor(predictor_port, BUNDLED_MODEL, "--max_batch_wait_ms", "1000")
    transformer = _start_transformer(transformer_port, predictor_port)
    url = f"http://127.0.0.1:{transformer_port}/v2/models/digits"
    try:
        wait_ready(f"{url}/ready", process=transformer)
        with ThreadPoolExecutor(count) as pool:
            in_flight = [
                pool.submit(requests.post, f"{url}/infer", json=_audio_request(), timeout=60) for _ in range(count)
            ]
            time.sleep(0.5)
            assert not any(future.done() for future in in_flight)
            yield transformer, predictor, url, in_flight
    finally:
        _stop(transformer, predictor)


@pytest.mark.parametrize("latency_logging", [False, True])
def test_timing_log_lines_appear_only_when_latency_logging_is_asked_for(tmp_path: Path, latency_logging: bool) -> None:
    """KServe's TimingMiddleware is dropped by default (it routes each request twice); the flag
    brings it back with its lines. The transformer alone answers liveness without a predictor."""
    port, log_path = free_port_pair(), tmp_path / "transformer.log"
    with log_path.open("wb") as log:
        transformer = subprocess.Popen(
            [sys.executable, "-m", "audio_maas.transformer",
             "--model_name", "digits", "--model_dir", str(BUNDLED_MODEL),
             "--http_port", str(port), "--grpc_port", str(port + 1), "--predictor_host", "127.0.0.1:9",
             "--enable_latency_logging", str(latency_logging).lower()],
            env=ENV, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{port}/v2/health/live", process=transformer)
            assert requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5).status_code == 200
        finally:
            _stop(transformer)
    assert ("kserve.io.v2.health.live" in log_path.read_text()) is latency_logging


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish_refuses_new_ones_and_exits() -> None:
    """What Kubernetes does on scale-down: SIGTERM, then SIGKILL after the grace period (30 s)."""
    with _requests_held_in_flight(6) as (transformer, _, url, in_flight):
        transformer.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{url}/infer", json=_audio_request(), timeout=5)
        answers = [future.result() for future in in_flight]
        assert [answer.status_code for answer in answers] == [200] * 6
        assert transformer.wait(timeout=30) == 0


@pytest.mark.slow
def test_predictor_killed_under_load_gives_quick_503s_never_500s_or_hangs_and_service_recovers() -> None:
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    predictor = _start_predictor(predictor_port)
    transformer = _start_transformer(transformer_port, predictor_port)
    url = f"http://127.0.0.1:{transformer_port}/v2/models/digits/infer"
    outcomes: list[tuple[float, int, float]] = []  # (sent at, status, seconds taken)
    stop = threading.Event()

    def load() -> None:
        # One kept-alive connection per client: a new one per request would leave thousands of
        # ports in TIME_WAIT, one of which can be the port the restarted predictor must bind.
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.monotonic()
                status = session.post(url, json=_audio_request(), timeout=30).status_code
                outcomes.append((sent, status, time.monotonic() - sent))

    try:
        wait_ready(f"http://127.0.0.1:{transformer_port}/v2/models/digits/ready", process=transformer)
        with ThreadPoolExecutor(8) as pool:
            workers = [pool.submit(load) for _ in range(8)]
            try:
                time.sleep(2)
                predictor.kill()
                killed = time.monotonic()
                predictor.wait(timeout=30)
                time.sleep(2)
                restarted = time.monotonic()
                predictor = _start_predictor(predictor_port)
                wait_ready(f"http://127.0.0.1:{predictor_port}/v2/models/digits/ready", process=predictor)
                recovered = time.monotonic()
                time.sleep(2)
            finally:
                stop.set()  # else the pool would wait forever for its clients, should anything fail
            for worker in workers:
                worker.result()
    finally:
        stop.set()
        _stop(transformer, predictor)
    statuses = {status for _, status, _ in outcomes}
    assert statuses == {200, 503}, statuses  # never a 500, never anything else
    assert max(taken for _, _, taken in outcomes) < 5  # nothing hung waiting on the dead predictor
    assert all(status == 503 for sent, status, _ in outcomes if killed + 0.5 < sent < restarted)
    assert all(status == 200 for sent, status, _ in outcomes if sent > recovered + 0.5)


@pytest.mark.slow
def test_sigterm_to_the_predictor_finishes_the_batch_in_flight_and_exits() -> None:
    """The predictor's side of a scale-down: the batch it holds is answered; the transformer
    answers 503 for what it could no longer forward, never 500."""
    with _requests_held_in_flight(4) as (_, predictor, _, in_flight):
        predictor.send_signal(signal.SIGTERM)
        statuses = [future.result().status_code for future in in_flight]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 1, statuses
        assert predictor.wait(timeout=30) == 0
