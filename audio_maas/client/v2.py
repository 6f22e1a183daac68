"""``audio-maas predict`` and ``explain``: audio files sent to the service with a stock V2 client
(tritonclient), its responses read back as numpy and JSON."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from audio_maas.protocol.contract import (
    AUDIO_INPUT,
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
    "explain_file",
    "model_outputs",
    "outputs_of_files",
    "predict_files",
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
    paths: Sequence[Path], *, url: str, model_name: str, auth_token: str | None = None, outputs: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Each file's ``outputs`` by name (none: those the model gives by default): BYTES as text (JSON
    documents parsed), numbers as arrays, frame-wise ones cut to the file's own frames (the
    service pads shorter files' frames with NaN, ``time_s`` too). Errors as :func:`predict_files`."""
    result = _infer(paths, list(outputs), url=url, model_name=model_name, auth_token=auth_token)
    per_file: list[dict[str, Any]] = [{} for _ in paths]
    values = {output["name"]: result.as_numpy(output["name"]) for output in result.get_response()["outputs"]}
    times = values.get(TIME_OUTPUT)
    for name, value in values.items():
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
    """tritonclient's response to the files as one BYTES input, sent binary, asking for ``outputs``
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
