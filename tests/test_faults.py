"""Faults between the real processes: the predictor away, and the local service stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from tests.conftest import BUNDLED_MODEL, encode, free_port_pair, tone, wait_ready

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _audio_request() -> dict:
    import base64

    wav = encode(tone(frequency_hz=300, seconds=0.3, sample_rate=8000), sample_rate=8000, format="WAV")
    return {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(wav).decode()]}]}


def test_transformer_answers_503_while_the_predictor_is_away_and_recovers_when_it_returns() -> None:
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    common = ["--model_name", "digits", "--model_dir", str(BUNDLED_MODEL)]
    transformer = subprocess.Popen(
        [sys.executable, "-m", "transformer", *common, "--http_port", str(transformer_port),
         "--grpc_port", str(transformer_port + 1), "--predictor_host", f"127.0.0.1:{predictor_port}",
         "--predictor_protocol", "v2"],
        env=ENV,
    )  # fmt: skip
    predictor = None
    url = f"http://127.0.0.1:{transformer_port}/v2/models/digits/infer"
    try:
        wait_ready(f"http://127.0.0.1:{transformer_port}/v2/models/digits/ready", process=transformer)
        started = time.monotonic()
        response = requests.post(url, json=_audio_request(), timeout=30)
        assert time.monotonic() - started < 5  # a refused connection is answered at once, not after a timeout
        assert response.status_code == 503
        assert response.json()["error"].startswith(f"predictor 127.0.0.1:{predictor_port} is unreachable")

        predictor = subprocess.Popen(
            [sys.executable, "-m", "predictor", *common, "--http_port", str(predictor_port),
             "--grpc_port", str(predictor_port + 1)],
            env=ENV,
        )  # fmt: skip
        wait_ready(f"http://127.0.0.1:{predictor_port}/v2/models/digits/ready", process=predictor)
        response = requests.post(url, json=_audio_request(), timeout=30)
        assert response.status_code == 200, response.text
    finally:
        for process in (transformer, predictor):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def test_serve_is_ready_quickly_and_sigterm_stops_both_servers() -> None:
    http_port, predictor_port = free_port_pair(), free_port_pair()
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "serve", "--http-port", str(http_port),
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
