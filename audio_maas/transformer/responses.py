"""The transformer's responses, built once from numpy, with only the outputs the client asked for.

A classifier's response has the label, class id and probabilities of each element (of each sound
heard on a live stream: :func:`stream_response`, with its times); with ``segment``, each
element's sequence and segments; with saliency asked for, the saliency and its frame times. A
model read through its interface responds with what its reader made of each element (the outputs
it gives by default when the client named none); frame-wise outputs of elements of different
lengths are padded with NaN to the longest (``time_s`` too, so that a client keeps the frames
where it is finite).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from audio_maas.features.interface import Output as InterfaceOutput
from audio_maas.protocol.contract import (
    CLASS_ID_OUTPUT,
    END_S_OUTPUT,
    FINAL_RESPONSE_PARAMETER,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    PARTIAL_RESPONSE_PARAMETER,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
    START_S_OUTPUT,
)
from audio_maas.protocol.messages import Output, Request, Response, respond
from audio_maas.transformer.live import Event, Heard, SequenceEnded

__all__ = ["class_outputs", "classifier_response", "interface_response", "stream_response"]

Spans = list[list[tuple[float, float]]]
"""Each element's segments, (start_s, end_s)."""


def classifier_response(
    request: Request,
    probabilities: np.ndarray,
    *,
    model_name: str,
    labels: list[str],
    spans: Spans | None = None,
    saliency: tuple[np.ndarray, np.ndarray] | None = None,
) -> Response:
    """The response to ``request`` from the predictor's float32 ``probabilities`` ``[rows,
    classes]``: a row per element, then, with ``spans``, a row per segment of each element in
    turn; ``saliency`` is the saliency ``[N, frames, bins]`` and its frame times ``[N, frames]``."""
    elements = len(spans) if spans is not None else len(probabilities)
    outputs = class_outputs(probabilities[:elements], labels)
    if spans is not None:
        outputs += _segments(probabilities[elements:], spans, labels)
    if saliency is not None:
        outputs += [Output(SALIENCY_OUTPUT, "FP32", saliency[0]), Output(SALIENCY_FRAME_S_OUTPUT, "FP32", saliency[1])]
    return respond(request, outputs, model_name=model_name)


def stream_response(event: Event, *, model_name: str, outputs_of: Callable[[np.ndarray], list[Output]]) -> Response:
    """The response to a live stream's event, naming its sequence: a sound heard; a sequence
    ended (Triton's final response: no outputs, ``triton_final_response``); a piece refused (no
    outputs: the error goes beside it)."""
    piece = event.piece
    request: Request = piece.request
    parameters: dict[str, Any] = {"sequence_id": piece.sequence_id} if piece.sequence_id else {}
    if isinstance(event, SequenceEnded):
        parameters[FINAL_RESPONSE_PARAMETER] = True
    if not isinstance(event, Heard):
        return respond(request, [], model_name=model_name, parameters=parameters)
    if event.partial:
        parameters[PARTIAL_RESPONSE_PARAMETER] = True
    outputs = [
        *outputs_of(event.row),
        Output(START_S_OUTPUT, "FP32", np.array([event.start_s], np.float32)),
        Output(END_S_OUTPUT, "FP32", np.array([event.end_s], np.float32)),
    ]
    return respond(request, outputs, model_name=model_name, parameters=parameters)


def interface_response(
    request: Request, read: list[dict[str, Any]], outputs: list[InterfaceOutput], *, model_name: str
) -> Response:
    """The response to ``request`` from each element's outputs as its model's reader ``read``
    them (``ModelInterface.outputs_of``), for ``outputs``: text as it is, lists as JSON, a number per
    element as a vector, arrays stacked with NaN padding."""
    tensors = []
    for output in outputs:
        values = [element[output.name] for element in read]
        if output.datatype == "BYTES":
            encoded = [v.encode() if isinstance(v, str) else json.dumps(v).encode() for v in values]
            tensors.append(Output(output.name, "BYTES", np.array(encoded, dtype=object)))
            continue
        if len(output.shape) == 1:
            dtype = np.int64 if output.datatype == "INT64" else np.float32
            tensors.append(Output(output.name, output.datatype, np.array(values, dtype=dtype)))
            continue
        stacked = np.full((len(values), max(len(v) for v in values), *values[0].shape[1:]), np.nan, np.float32)
        for row, value in zip(stacked, values, strict=True):
            row[: len(value)] = value
        tensors.append(Output(output.name, "FP32", stacked))
    return respond(request, tensors, model_name=model_name)


def class_outputs(probabilities: np.ndarray, labels: list[str]) -> list[Output]:
    """Label, class id and probabilities of each row of ``probabilities`` ``[n, classes]``."""
    class_ids = probabilities.argmax(axis=1).astype(np.int64)
    return [
        Output(LABEL_OUTPUT, "BYTES", np.array([labels[i].encode() for i in class_ids], dtype=object)),
        Output(CLASS_ID_OUTPUT, "INT64", class_ids),
        Output(OUTPUT_NAME, "FP32", probabilities),
    ]


def _segments(probabilities: np.ndarray, spans: Spans, labels: list[str]) -> list[Output]:
    """``sequence`` and ``segments`` of each element, from its segments' rows of ``probabilities``."""
    sequences, tables = [], []
    offset = 0
    for element_spans in spans:
        rows = probabilities[offset : offset + len(element_spans)]
        offset += len(element_spans)
        names = [labels[int(row.argmax())] for row in rows]
        table = [
            {"start_s": round(start_s, 3), "end_s": round(end_s, 3), "label": name, "probability": round(p, 4)}
            for (start_s, end_s), name, p in zip(element_spans, names, rows.max(axis=1).tolist(), strict=True)
        ]
        sequences.append(" ".join(names).encode())
        tables.append(json.dumps(table).encode())
    return [
        Output(SEQUENCE_OUTPUT, "BYTES", np.array(sequences, dtype=object)),
        Output(SEGMENTS_OUTPUT, "BYTES", np.array(tables, dtype=object)),
    ]
