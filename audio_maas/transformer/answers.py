"""The transformer's answer to a client, built once from numpy: labels, class ids and
probabilities of each element; with ``segment``, each element's sequence and segments; with
saliency asked for, the saliency and its frame times. Only the outputs the client asked for (all
when it named none), in the encoding it asked for."""

from __future__ import annotations

import json
import uuid

import numpy as np
from kserve import InferResponse

from audio_maas.kserve.tensors import asked_outputs
from audio_maas.protocol.contract import (
    CLASS_ID_OUTPUT,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
)
from audio_maas.transformer.inputs import Featurised

__all__ = ["answer"]

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
    class_ids = element_rows.argmax(axis=1).astype(np.int64)
    answers: list[Answer] = [
        (LABEL_OUTPUT, "BYTES", np.array([labels[i].encode() for i in class_ids], dtype=object)),
        (CLASS_ID_OUTPUT, "INT64", class_ids),
        (OUTPUT_NAME, "FP32", element_rows),
    ]
    if spans is not None:
        answers += _segment_answers(probabilities[len(spans) :], spans, labels)
    if featurised.frame_times is not None and saliency is not None:
        answers += [(SALIENCY_OUTPUT, "FP32", saliency), (SALIENCY_FRAME_S_OUTPUT, "FP32", featurised.frame_times)]
    request = featurised.request
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),  # V2 answers always carry an id
        model_name=model_name,
        infer_outputs=asked_outputs(request, answers, binary_data=False),
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
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
