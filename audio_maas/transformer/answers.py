"""The transformer's answer to a client, built once from numpy, with only the outputs the client
asked for, in the encoding it asked for.

A classifier answers labels, class ids and probabilities of each element (of each sound heard on
a live stream: :func:`stream_response`, with its times); with ``segment``, each
element's sequence and segments; with saliency asked for, the saliency and its frame times (all
when the client named none). A model read through its interface answers what its reader made of
each element (the outputs it answers by default when the client named none); frame-wise outputs
of elements of different lengths are padded with NaN to the longest (``time_s`` too, so that a
client keeps the frames where it is finite).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
from kserve import InferRequest, InferResponse

from audio_maas.features.interface import Output
from audio_maas.kserve.tensors import asked_outputs
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
from audio_maas.transformer.inputs import Featurised
from audio_maas.transformer.live import Event, Heard, SequenceEnded

__all__ = ["answer", "interface_answer", "stream_response"]

Answer = tuple[str, str, np.ndarray]
"""An output: name, V2 datatype, value."""


def answer(
    featurised: Featurised,
    probabilities: np.ndarray,
    saliency: np.ndarray | None,
    *,
    model_name: str,
    labels: list[str],
) -> InferResponse:
    """The response to ``featurised.request``, from the predictor's float32 ``probabilities``
    ``[rows, classes]`` (a row per row of ``featurised.features``) and, when asked for, its
    float32 ``saliency`` ``[N, frames, bins]``."""
    spans = featurised.spans
    element_rows = probabilities if spans is None else probabilities[: len(spans)]
    answers = _classes(element_rows, labels)
    if spans is not None:
        answers += _segment_answers(probabilities[len(spans) :], spans, labels)
    if featurised.frame_times is not None and saliency is not None:
        answers += [(SALIENCY_OUTPUT, "FP32", saliency), (SALIENCY_FRAME_S_OUTPUT, "FP32", featurised.frame_times)]
    return _response(featurised.request, answers, model_name)


def stream_response(event: Event, *, model_name: str, labels: list[str]) -> InferResponse:
    """The response to a live stream's event, naming its sequence: a sound heard, with outputs as
    raw binary contents, as ``ModelInfer`` answers them; a sequence ended (Triton's final
    response: no outputs, ``triton_final_response``); a piece refused (no outputs: the error is
    sent beside it)."""
    piece = event.piece
    parameters: dict[str, Any] = {"sequence_id": piece.sequence_id} if piece.sequence_id else {}
    if isinstance(event, SequenceEnded):
        parameters[FINAL_RESPONSE_PARAMETER] = True
    if not isinstance(event, Heard):
        return _response(piece.request, [], model_name, parameters=parameters)
    if event.partial:
        parameters[PARTIAL_RESPONSE_PARAMETER] = True
    answers = [
        *_classes(event.probabilities[np.newaxis], labels),
        (START_S_OUTPUT, "FP32", np.array([event.start_s], np.float32)),
        (END_S_OUTPUT, "FP32", np.array([event.end_s], np.float32)),
    ]
    return _response(piece.request, answers, model_name, parameters=parameters, binary_data=True)


def interface_answer(
    request: InferRequest, answered: list[dict[str, Any]], outputs: list[Output], *, model_name: str
) -> InferResponse:
    """The response to ``request`` from each element's ``answered`` outputs by name
    (``ModelInterface.answers``), for ``outputs``: text as it is, lists as JSON, a number per
    element as a vector, arrays stacked with NaN padding."""
    answers: list[Answer] = []
    for output in outputs:
        values = [element[output.name] for element in answered]
        if output.datatype == "BYTES":
            encoded = [v.encode() if isinstance(v, str) else json.dumps(v).encode() for v in values]
            answers.append((output.name, "BYTES", np.array(encoded, dtype=object)))
            continue
        if len(output.shape) == 1:
            dtype = np.int64 if output.datatype == "INT64" else np.float32
            answers.append((output.name, output.datatype, np.array(values, dtype=dtype)))
            continue
        stacked = np.full((len(values), max(len(v) for v in values), *values[0].shape[1:]), np.nan, np.float32)
        for row, value in zip(stacked, values, strict=True):
            row[: len(value)] = value
        answers.append((output.name, "FP32", stacked))
    return _response(request, answers, model_name)


def _classes(probabilities: np.ndarray, labels: list[str]) -> list[Answer]:
    """Label, class id and probabilities of each row of ``probabilities`` ``[n, classes]``."""
    class_ids = probabilities.argmax(axis=1).astype(np.int64)
    return [
        (LABEL_OUTPUT, "BYTES", np.array([labels[i].encode() for i in class_ids], dtype=object)),
        (CLASS_ID_OUTPUT, "INT64", class_ids),
        (OUTPUT_NAME, "FP32", probabilities),
    ]


def _response(
    request: InferRequest,
    answers: list[Answer],
    model_name: str,
    *,
    parameters: dict[str, Any] | None = None,
    binary_data: bool = False,
) -> InferResponse:
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),  # V2 answers always carry an id
        model_name=model_name,
        infer_outputs=asked_outputs(request, answers, binary_data=binary_data),
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
        parameters=parameters or None,
    )


def _segment_answers(
    probabilities: np.ndarray, spans: list[list[tuple[float, float]]], labels: list[str]
) -> list[Answer]:
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
        (SEQUENCE_OUTPUT, "BYTES", np.array(sequences, dtype=object)),
        (SEGMENTS_OUTPUT, "BYTES", np.array(tables, dtype=object)),
    ]
