"""``audio-maas predict``: send audio files to the service with a stock V2 client (tritonclient).

``python -m audio_maas.client --check --url URL --model-name NAME`` is the deployment check that
``helm test`` runs: it needs only the transformer image (standard library and soundfile).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from audio_maas.protocol.contract import (
    AUDIO_INPUT,
    AUTH_TOKEN_ENV,
    CLASS_ID_OUTPUT,
    DEFAULT_MODEL_NAME,
    LABEL_OUTPUT,
    NOTES_OUTPUT,
    OUTPUT_NAME,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
    TAG_TIMELINE_OUTPUT,
    TIME_OUTPUT,
    TOP_TAGS_OUTPUT,
)

__all__ = [
    "Explanation",
    "Prediction",
    "ServiceUnreachable",
    "check_deployment",
    "explain_file",
    "is_ready",
    "model_outputs",
    "outputs_of_files",
    "predict_files",
    "wait_ready",
    "write_midi",
]

JSON_OUTPUTS = frozenset({SEGMENTS_OUTPUT, NOTES_OUTPUT, TOP_TAGS_OUTPUT, TAG_TIMELINE_OUTPUT})
"""BYTES outputs whose elements are JSON documents."""


class ServiceUnreachable(ConnectionError):
    """Nothing answers at the URL."""


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: str
    top: list[tuple[int, float]]
    """The most probable class ids with their probabilities, best first (the first is ``label``'s)."""
    sequence: str | None = None
    """With ``segment``: the labels of the file's segments in time order."""
    segments: list[dict[str, Any]] | None = None
    """With ``segment``: ``{"start_s", "end_s", "label", "probability"}`` of each segment."""


def predict_files(
    paths: Sequence[Path],
    *,
    url: str,
    model_name: str,
    top_k: int = 3,
    auth_token: str | None = None,
    segment: bool = False,
) -> list[Prediction]:
    """One request carrying every file as a BYTES element, sent with the binary data extension,
    and ``auth_token`` as its bearer token when given; with ``segment``, each file's segments too.

    Raises :class:`ServiceUnreachable` when nothing answers, and ``RuntimeError`` with the
    server's message when it refuses the request.
    """
    names = [LABEL_OUTPUT, OUTPUT_NAME] + ([SEQUENCE_OUTPUT, SEGMENTS_OUTPUT] if segment else [])
    parameters = {"segment": True} if segment else None
    result = _infer(paths, names, url=url, model_name=model_name, auth_token=auth_token, parameters=parameters)
    labels = [label.decode() for label in result.as_numpy(LABEL_OUTPUT)]
    probabilities = result.as_numpy(OUTPUT_NAME)
    sequences = [s.decode() for s in result.as_numpy(SEQUENCE_OUTPUT)] if segment else [None] * len(paths)
    tables = [json.loads(t) for t in result.as_numpy(SEGMENTS_OUTPUT)] if segment else [None] * len(paths)
    return [
        Prediction(
            path=path,
            label=label,
            top=[(int(i), float(row[i])) for i in np.argsort(row)[::-1][:top_k]],
            sequence=sequence,
            segments=table,
        )
        for path, label, row, sequence, table in zip(paths, labels, probabilities, sequences, tables, strict=True)
    ]


def outputs_of_files(
    paths: Sequence[Path], *, url: str, model_name: str, auth_token: str | None = None
) -> list[dict[str, Any]]:
    """Each file's outputs by name, those the model gives when none is named: BYTES as text (JSON
    documents parsed), numbers as arrays, frame-wise ones cut to the file's own frames (the
    service pads shorter files' frames with NaN, ``time_s`` too). Errors as :func:`predict_files`."""
    result = _infer(paths, [], url=url, model_name=model_name, auth_token=auth_token)
    per_file: list[dict[str, Any]] = [{} for _ in paths]
    outputs = {output["name"]: result.as_numpy(output["name"]) for output in result.get_response()["outputs"]}
    times = outputs.get(TIME_OUTPUT)
    for name, value in outputs.items():
        for element, file_outputs in enumerate(per_file):
            if value.dtype == object:
                text = value[element].decode()
                file_outputs[name] = json.loads(text) if name in JSON_OUTPUTS else text
            elif times is not None and value.ndim > 1 and value.shape[1] == times.shape[1]:
                file_outputs[name] = value[element][np.isfinite(times[element])]
            else:
                file_outputs[name] = value[element]
    return per_file


def model_outputs(*, url: str, model_name: str, auth_token: str | None = None) -> list[str]:
    """The names of the model's outputs, from its V2 metadata; errors as :func:`predict_files`."""
    with _client(url) as client:
        try:
            metadata = client.get_model_metadata(model_name, headers=_bearer(auth_token))
        except Exception as error:
            raise _client_error(error, url) from None
    return [output["name"] for output in metadata["outputs"]]


def write_midi(notes: list[dict[str, Any]], path: Path) -> None:
    """``notes`` (the ``notes`` output's ``start_s``, ``end_s``, ``midi``, ``confidence``) as a
    one-track MIDI file (piano), each note's velocity its confidence."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for note in notes:
        velocity = max(1, min(127, round(127 * note["confidence"])))
        piano.notes.append(pretty_midi.Note(velocity, note["midi"], note["start_s"], note["end_s"]))
    midi.instruments.append(piano)
    midi.write(str(path))


@dataclass(frozen=True)
class Explanation:
    """The service's answer and its explanation for one file (outputs ``saliency`` and ``saliency_frame_s``)."""

    label: str
    probabilities: np.ndarray
    """float32 ``[classes]``."""
    saliency: np.ndarray
    """float32 ``[frames, bins]`` on the model's feature grid: higher is more evidence for ``label``."""
    frame_s: np.ndarray
    """float32 ``[frames]``: each frame's centre in seconds of the file."""


def explain_file(path: Path, *, url: str, model_name: str, auth_token: str | None = None) -> Explanation:
    """Ask the service why it answers what it does for ``path``; errors as :func:`predict_files`."""
    names = [LABEL_OUTPUT, OUTPUT_NAME, SALIENCY_OUTPUT, SALIENCY_FRAME_S_OUTPUT]
    result = _infer([path], names, url=url, model_name=model_name, auth_token=auth_token)
    return Explanation(
        label=result.as_numpy(LABEL_OUTPUT)[0].decode(),
        probabilities=result.as_numpy(OUTPUT_NAME)[0],
        saliency=result.as_numpy(SALIENCY_OUTPUT)[0],
        frame_s=result.as_numpy(SALIENCY_FRAME_S_OUTPUT)[0],
    )


def _infer(
    paths: Sequence[Path],
    outputs: list[str],
    *,
    url: str,
    model_name: str,
    auth_token: str | None,
    parameters: dict[str, Any] | None = None,
) -> Any:
    """tritonclient's answer to the files as one BYTES input, sent binary, asking for ``outputs``
    (the model's default ones when empty)."""
    import tritonclient.http as http

    files = np.array([path.read_bytes() for path in paths], dtype=object)
    audio = http.InferInput(AUDIO_INPUT, [len(files)], "BYTES")
    audio.set_data_from_numpy(files, binary_data=True)
    requested = [http.InferRequestedOutput(name, binary_data=True) for name in outputs]
    with _client(url) as client:
        try:
            return client.infer(
                model_name, [audio], outputs=requested or None, headers=_bearer(auth_token), parameters=parameters
            )
        except Exception as error:
            raise _client_error(error, url) from None


@contextlib.contextmanager
def _client(url: str) -> Iterator[Any]:
    """tritonclient's HTTP client for ``url`` (``http://``, ``https://`` or just ``HOST:PORT``)."""
    import tritonclient.http as http

    parts = urlsplit(url if "://" in url else f"http://{url}")
    client = http.InferenceServerClient(parts.netloc, ssl=parts.scheme == "https", connection_timeout=5)
    try:
        yield client
    finally:
        client.close()


def _bearer(auth_token: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {auth_token}"} if auth_token else None


def _client_error(error: Exception, url: str) -> Exception:
    """The service's refusal as a ``RuntimeError`` with its message; nothing answering as
    :class:`ServiceUnreachable`; anything else as it is."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        return RuntimeError(error.message())
    if isinstance(error, (ConnectionError, OSError)):
        return ServiceUnreachable(f"cannot reach {url} ({error}); is `audio-maas serve` running?")
    return error


def check_deployment(*, url: str, model_name: str, timeout_s: float = 300.0) -> str:
    """Wait until the model is ready, send it a generated 0.5 s tone, and return what it answered:
    a classifier's label, or the names of another model's outputs.

    Raises ``RuntimeError`` naming what is wrong: never ready, or an answer that is not a V2
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
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"inference answered {error.code}: {error.read()[:300]!r}") from None
    with urllib.request.urlopen(urllib.request.Request(base, headers=headers), timeout=30) as response:
        metadata = json.load(response)
    outputs = {output["name"]: output for output in answer.get("outputs", [])}
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
        raise RuntimeError(f"the answer has {probabilities.size} classes, the model's metadata {classes}")
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
        answered = check_deployment(url=args.url, model_name=args.model_name, timeout_s=args.timeout_s)
    except RuntimeError as error:
        print(f"check failed: {error}", file=sys.stderr)
        return 1
    print(f"check passed: {args.url} answered {answered!r}")
    return 0
