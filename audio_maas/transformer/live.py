"""Live audio on one gRPC stream (``ModelStreamInfer``): each sound answered as soon as it ends.

A client sends the pieces of one or more recordings on a stream, each piece a request as for
``ModelInfer`` with one element: ``waveform`` (FP32 or INT16 PCM ``[1, samples]`` at the
parameter ``sample_rate``) or ``audio`` (one encoded file). Pieces of one recording carry the
same parameter ``sequence_id`` (none: the stream's one recording); ``sequence_start`` begins it
anew and ``sequence_end`` ends it, as tritonclient's ``async_stream_infer`` sets them. Each sound
is answered once, when it has ended (:class:`~audio_maas.features.stream.StreamSegmenter`): its
``label``, ``class_id``, ``probabilities``, and ``start_s`` and ``end_s`` on the recording's clock
(seconds since its first piece). With the parameter ``partial_ms``, the sound going on is also
answered as heard so far, every that many ms. The end of a recording is answered too, by an answer without
outputs whose parameter ``triton_final_response`` is true.

A piece that is not audio, or at another rate than the recording's first, ends the stream with
INVALID_ARGUMENT; more than ``stream_max_held_s`` of audio held, RESOURCE_EXHAUSTED; nothing sent
for ``stream_idle_s``, DEADLINE_EXCEEDED. Other streams go on.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse

from audio_maas.features.audio import InvalidAudioError
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.segment import SegmentOptions
from audio_maas.features.stream import Sound, StreamSegmenter
from audio_maas.kserve.tensors import request_parameter
from audio_maas.protocol.contract import (
    CLASS_ID_OUTPUT,
    END_S_OUTPUT,
    FINAL_RESPONSE_PARAMETER,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    PARTIAL_PARAMETER,
    PARTIAL_RESPONSE_PARAMETER,
    START_S_OUTPUT,
)
from audio_maas.protocol.errors import BadRequest, StreamIdle, StreamLimit
from audio_maas.transformer.inputs import RequestReader
from audio_maas.transformer.settings import TransformerSettings

__all__ = ["live_answers"]

Classify = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""Features ``[n, frames, bins]`` -> probabilities ``[n, classes]``."""


@dataclass
class _Recording:
    segmenter: StreamSegmenter
    sample_rate: int
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    partial_at_s: float = 0.0
    """Stream time of the next partial answer, when they are asked for."""


async def live_answers(
    requests: AsyncIterator[InferRequest],
    *,
    model_name: str,
    front_end: FrontEnd,
    labels: list[str],
    settings: TransformerSettings,
    classify: Classify,
    run: Callable[..., Awaitable[Any]],
) -> AsyncIterator[InferResponse]:
    """The answers to one stream's ``requests``; ``classify`` runs the model, ``run(function)``
    runs CPU work off the event loop."""
    reader = RequestReader(model_name, settings, lambda waveform, sample_rate, mode: (waveform, sample_rate))
    options = SegmentOptions.for_spec(front_end.spec)
    recordings: dict[Any, _Recording] = {}
    pieces = aiter(requests)
    while True:
        try:
            request = await asyncio.wait_for(anext(pieces), settings.stream_idle_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise StreamIdle(f"nothing received for {settings.stream_idle_s:g} s (stream_idle_s)") from None
        key = request_parameter(request, "sequence_id") or 0
        name = f"sequence {key!r}" if key else "the stream's recording"
        jobs, _ = reader.jobs(request, None)
        if len(jobs) != 1:
            raise BadRequest(f"{name}: a piece of a live recording is one element, got {len(jobs)}")
        waveform, sample_rate = await run(jobs[0])
        recording = recordings.get(key)
        if recording is None or request_parameter(request, "sequence_start"):
            segmenter = StreamSegmenter(front_end, options, sample_rate=sample_rate)
            recording = recordings[key] = _Recording(segmenter, sample_rate)
        if sample_rate != recording.sample_rate:
            raise BadRequest(f"{name}: a piece at {sample_rate} Hz after pieces at {recording.sample_rate} Hz")
        held_s = sum(other.segmenter.held_s for other in recordings.values()) + len(waveform) / sample_rate
        if held_s > settings.stream_max_held_s:  # all its recordings together: a stream's memory is bounded
            raise StreamLimit(
                f"{name}: the stream would hold {held_s:.1f} s of audio, over the limit of "
                f"{settings.stream_max_held_s:g} s (stream_max_held_s)"
            )
        last = bool(request_parameter(request, "sequence_end"))
        try:
            sounds = await run(functools.partial(recording.segmenter.push, waveform, last=last))
        except InvalidAudioError as error:
            raise BadRequest(f"{name}: {error}") from None
        if sounds:
            probabilities = await classify(np.stack([sound.features for sound in sounds]))
            for sound, row in zip(sounds, probabilities, strict=True):
                yield _answer(request, sound, row, key=key, model_name=model_name, labels=labels)
        partial_ms = request_parameter(request, PARTIAL_PARAMETER)
        if partial_ms is not None and not last:
            if isinstance(partial_ms, bool) or not isinstance(partial_ms, int) or partial_ms < 10:
                raise BadRequest(
                    f"{name}: '{PARTIAL_PARAMETER}' must be a whole number of ms, 10 or more, got {partial_ms!r}"
                )
            if recording.segmenter.heard_s >= recording.partial_at_s:
                recording.partial_at_s = recording.segmenter.heard_s + partial_ms / 1000
                sound = await run(recording.segmenter.going_on)
                if sound is not None:
                    (row,) = await classify(sound.features[np.newaxis])
                    yield _answer(request, sound, row, key=key, model_name=model_name, labels=labels, partial=True)
        if last:
            del recordings[key]
            yield InferResponse(
                response_id=request.id or recording.id,
                model_name=model_name,
                infer_outputs=[],
                parameters={FINAL_RESPONSE_PARAMETER: True, **({"sequence_id": key} if key else {})},
            )


def _answer(
    request: InferRequest,
    sound: Sound,
    probabilities: np.ndarray,
    *,
    key: Any,
    model_name: str,
    labels: list[str],
    partial: bool = False,
) -> InferResponse:
    class_id = int(probabilities.argmax())
    values = [
        (LABEL_OUTPUT, "BYTES", np.array([labels[class_id].encode()], dtype=object)),
        (CLASS_ID_OUTPUT, "INT64", np.array([class_id], np.int64)),
        (OUTPUT_NAME, "FP32", probabilities[np.newaxis]),
        (START_S_OUTPUT, "FP32", np.array([sound.start_s], np.float32)),
        (END_S_OUTPUT, "FP32", np.array([sound.end_s], np.float32)),
    ]
    outputs = []
    for name, datatype, value in values:
        output = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
        output.set_data_from_numpy(value, binary_data=True)  # raw_output_contents, as ModelInfer answers
        outputs.append(output)
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),
        model_name=model_name,
        infer_outputs=outputs,
        parameters={**({"sequence_id": key} if key else {}), **({PARTIAL_RESPONSE_PARAMETER: True} if partial else {})}
        or None,
    )
