"""``audio-maas listen``: a recording streamed to the service as it plays, each sound's answer
printed as it arrives, with tritonclient.grpc's own streaming API (``start_stream``,
``async_stream_infer``) on the transformer's gRPC port.

The audio goes in pieces of ``PIECE_S`` as 16-bit PCM (``waveform`` INT16 ``[1, samples]``), one
recording (``sequence_id`` 1) per call: a file is paced as if it played; standard input is
raw 16-bit little-endian mono PCM, sent as it is read.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from audio_maas.protocol.contract import (
    END_S_OUTPUT,
    FINAL_RESPONSE_PARAMETER,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    START_S_OUTPUT,
    TEXT_OUTPUT,
    WAVEFORM_INPUT,
)

__all__ = ["PIECE_S", "Heard", "file_pieces", "listen", "pcm_pieces"]

PIECE_S = 0.1
"""Seconds of audio per piece sent."""


@dataclass(frozen=True)
class Heard:
    """One sound's response, and how long after the sound's end it arrived."""

    label: str
    """A classifier's class name, or a speech recogniser's words."""
    probability: float | None
    """The class's probability; None for words."""
    start_s: float
    end_s: float
    latency_s: float
    """From the moment the audio at ``end_s`` was sent to the response's arrival."""


def file_pieces(waveform: np.ndarray, sample_rate: int) -> Iterator[np.ndarray]:
    """A decoded file (float ``[samples]`` or ``[samples, channels]``) in pieces, each when it would play."""
    mono = waveform.mean(axis=1) if waveform.ndim == 2 else waveform
    step = max(1, round(PIECE_S * sample_rate))
    started = time.monotonic()
    for first in range(0, len(mono), step):
        time.sleep(max(0.0, started + first / sample_rate - time.monotonic()))
        yield mono[first : first + step]


def pcm_pieces(stream: BinaryIO, sample_rate: int) -> Iterator[np.ndarray]:
    """Raw 16-bit little-endian mono PCM from ``stream``, in pieces, as it is read."""
    size = 2 * max(1, round(PIECE_S * sample_rate))
    while data := stream.read(size):
        usable = len(data) - len(data) % 2
        yield np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768


def listen(
    pieces: Iterator[np.ndarray],
    *,
    url: str,
    model_name: str,
    sample_rate: int,
    on_heard: Callable[[Heard], None],
    auth_token: str | None = None,
) -> None:
    """Stream ``pieces`` (float mono at ``sample_rate``) to ``url`` (the transformer's gRPC
    ``HOST:PORT``) and call ``on_heard`` with each response as it arrives, until the recording's
    last one. Raises ``RuntimeError`` with the service's words when it ends the stream."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    answers: queue.Queue[tuple[Any, Any, float]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    headers = {"authorization": f"Bearer {auth_token}"} if auth_token else None
    client.start_stream(callback=lambda result, error: answers.put((result, error, time.monotonic())), headers=headers)
    sent_at: list[float] = []  # when the audio up to each piece's end left
    try:
        previous = next(pieces, None)
        first = True
        while previous is not None:
            piece = next(pieces, None)
            tensor = grpcclient.InferInput(WAVEFORM_INPUT, [1, len(previous)], "INT16")
            tensor.set_data_from_numpy((np.clip(previous, -1, 1) * 32767).astype(np.int16)[np.newaxis])
            try:
                client.async_stream_infer(
                    model_name, [tensor], sequence_id=1, sequence_start=first, sequence_end=piece is None,
                    parameters={"sample_rate": sample_rate},
                )  # fmt: skip
            except InferenceServerException:
                break  # the service ended the stream: the callback has its words
            sent_at.append(time.monotonic())
            first, previous = False, piece
            _drain(answers, on_heard, sent_at)
        _drain(answers, on_heard, sent_at, until_final=True)
    finally:
        client.stop_stream()
        client.close()


def _drain(
    answers: queue.Queue[tuple[Any, Any, float]],
    on_heard: Callable[[Heard], None],
    sent_at: list[float],
    *,
    until_final: bool = False,
) -> None:
    """Hand on the responses that have arrived; with ``until_final``, wait for the last one."""
    while True:
        try:
            result, error, arrived = answers.get(timeout=60) if until_final else answers.get_nowait()
        except queue.Empty:
            if until_final:
                raise RuntimeError("the service sent no final response within 60 s") from None
            return
        if error is not None:
            raise RuntimeError(str(error))
        if FINAL_RESPONSE_PARAMETER in result.get_response().parameters:
            return
        end_s = float(result.as_numpy(END_S_OUTPUT)[0])
        piece = min(len(sent_at) - 1, int(end_s / PIECE_S))  # the piece that carried the sound's end
        names = {output.name for output in result.get_response().outputs}
        words = TEXT_OUTPUT in names
        on_heard(
            Heard(
                label=result.as_numpy(TEXT_OUTPUT if words else LABEL_OUTPUT)[0].decode(),
                probability=None if words else float(result.as_numpy(OUTPUT_NAME)[0].max()),
                start_s=float(result.as_numpy(START_S_OUTPUT)[0]),
                end_s=end_s,
                latency_s=arrived - sent_at[piece],
            )
        )
