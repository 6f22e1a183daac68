"""The deployment check that ``helm test`` runs (``python -m audio_maas.client --check --url URL
--model-name NAME``), and readiness polling: the standard library's HTTP alone (and soundfile),
so that the check runs in the transformer's image, which has no tritonclient."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable

import numpy as np

from audio_maas.protocol.contract import AUDIO_INPUT, CLASS_ID_OUTPUT, LABEL_OUTPUT, OUTPUT_NAME
from audio_maas.protocol.defaults import AUTH_TOKEN_ENV, DEFAULT_MODEL_NAME

__all__ = ["check_deployment", "is_ready", "main", "wait_ready"]


def check_deployment(*, url: str, model_name: str, timeout_s: float = 300.0) -> str:
    """Wait until the model is ready, send it a generated 0.5 s tone, and return what it answered:
    a classifier's label, or the names of another model's outputs.

    Raises ``RuntimeError`` naming what is wrong: never ready, or a response that is not a V2
    response with one ``label`` and one distribution over as many classes as the model's metadata
    names (so the deployed model's transformer and predictor agree), or, from a model that is not
    a classifier, outputs its metadata does not declare as answered, or none. Sends the bearer
    token in ``AUDIO_MAAS_AUTH_TOKEN`` when that is set.
    """
    import soundfile

    base = f"{url.rstrip('/')}/v2/models/{model_name}"
    if wait_ready([f"{base}/ready"], timeout_s=timeout_s, interval_s=2):
        raise RuntimeError(f"{base}/ready did not answer 200 within {timeout_s:g} s")
    sample_rate = 8000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(sample_rate // 2) / sample_rate)
    wav = io.BytesIO()
    soundfile.write(wav, tone, sample_rate, format="WAV")
    encoded = base64.b64encode(wav.getvalue()).decode()
    audio = {"name": AUDIO_INPUT, "shape": [1], "datatype": "BYTES", "data": [encoded]}
    headers = {"content-type": "application/json"}
    if token := os.environ.get(AUTH_TOKEN_ENV):
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}/infer", data=json.dumps({"inputs": [audio]}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"inference answered {error.code}: {error.read()[:300]!r}") from None
    with urllib.request.urlopen(urllib.request.Request(base, headers=headers), timeout=30) as response:
        metadata = json.load(response)
    outputs = {output["name"]: output for output in body.get("outputs", [])}
    declared = {output["name"]: output for output in metadata.get("outputs", [])}
    if LABEL_OUTPUT not in declared:
        wrong = [
            name
            for name, output in outputs.items()
            if name not in declared or output["datatype"] != declared[name]["datatype"] or output["shape"][0] != 1
        ]
        if not outputs or wrong:
            raise RuntimeError(f"expected one element of outputs declared in the metadata, got {sorted(outputs)}")
        return ", ".join(outputs)
    expected = {LABEL_OUTPUT, CLASS_ID_OUTPUT, OUTPUT_NAME}
    if set(outputs) != expected:
        raise RuntimeError(f"expected outputs {sorted(expected)}, got {sorted(outputs)}")
    probabilities = np.asarray(outputs[OUTPUT_NAME]["data"], dtype=np.float64)
    if outputs[OUTPUT_NAME]["shape"] != [1, probabilities.size] or abs(probabilities.sum() - 1) > 1e-3:
        raise RuntimeError(f"probabilities are not one distribution: {outputs[OUTPUT_NAME]}")
    classes = declared[OUTPUT_NAME]["shape"][-1]
    if probabilities.size != classes:
        raise RuntimeError(f"the response has {probabilities.size} classes, the model's metadata {classes}")
    return str(outputs[LABEL_OUTPUT]["data"][0])


def is_ready(url: str) -> bool:
    """Whether ``url`` answers 200 now (a readiness endpoint); False when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_ready(
    urls: Iterable[str], *, timeout_s: float, stop: Callable[[], bool] = lambda: False, interval_s: float = 0.2
) -> list[str]:
    """Poll each of ``urls`` (readiness endpoints) until all answer 200, ``stop()`` turns true or
    ``timeout_s`` passes. Returns those not ready by then: empty when all are."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending:
        pending = [url for url in pending if not is_ready(url)]
        if not pending or stop() or time.monotonic() > deadline:
            break
        time.sleep(interval_s)
    return pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", required=True, help="run the deployment check")
    parser.add_argument("--url", required=True, help="transformer base URL, e.g. http://digits-transformer.ns")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="how long to wait for readiness")
    args = parser.parse_args(argv)
    try:
        probabilities = check_deployment(url=args.url, model_name=args.model_name, timeout_s=args.timeout_s)
    except RuntimeError as error:
        print(f"check failed: {error}", file=sys.stderr)
        return 1
    print(f"check passed: {args.url} answered {probabilities!r}")
    return 0
