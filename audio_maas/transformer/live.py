"""Live audio: the sequences of one stream, each sound answered as soon as it ends.

A stream carries pieces of one or more recordings, each piece one element of audio; pieces of
one recording share a sequence id (none: the stream's one recording), ``start`` begins it anew
and ``end`` ends it, as Triton's sequence parameters do. Each sound is heard once, when it has
ended (:class:`~audio_maas.features.stream.StreamSegmenter`): what the model makes of it (a
classifier's probabilities, a speech recogniser's tokens), and its start and end on the
recording's clock (seconds since its first piece). With
``partial_ms``, the sound going on is also heard as so far, every that many ms of the recording.
The end of a recording is answered too (:class:`SequenceEnded`).

As Triton keeps its streams, a fault is the sequence's own: a piece that is not audio, at another
rate than the recording's first, or that would have the server hold more than
``sequence_max_held_s`` of the recording, or a sequence beyond ``stream_max_sequences`` at once,
is answered :class:`SequenceFailed` naming it; that sequence is forgotten, its later pieces are
refused until one starts it anew, and the stream goes on for the others. Nothing received for
``stream_idle_s`` ends the stream (:class:`~audio_maas.protocol.errors.StreamIdle`).

No framework and no V2 here: a pipeline turns requests into :class:`Piece` objects and these
events into responses (``audio_maas.transformer.classifier``, ``audio_maas.transformer.windowed``).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio_maas.features.audio import InvalidAudioError
from audio_maas.features.segment import SegmentOptions
from audio_maas.features.stream import Sound, StreamFrontEnd, StreamSegmenter
from audio_maas.protocol.contract import PARTIAL_PARAMETER
from audio_maas.protocol.errors import BadRequest, ServiceError, StreamIdle, StreamLimit
from audio_maas.serving.metrics import STREAM_REFUSALS, STREAM_RESPONSE_DELAY_SECONDS, STREAM_SEQUENCES
from audio_maas.transformer.settings import TransformerSettings

__all__ = ["Heard", "LiveStream", "Piece", "SequenceEnded", "SequenceFailed"]

Classify = Callable[[np.ndarray], Awaitable[np.ndarray]]
"""The features of ``n`` sounds -> the model's row for each, ``[n, ...]`` (a classifier's probabilities)."""
Run = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs CPU work off the event loop."""


@dataclass(frozen=True)
class Piece:
    """One request of a stream: a piece of one sequence's recording."""

    decode: Callable[[], tuple[np.ndarray, int]]
    """The piece's audio, float32 ``[samples]`` or ``[samples, channels]``, and its rate; raises
    :class:`BadRequest` when it is not one element of audio. Called off the event loop."""
    sequence_id: Hashable = 0
    """0: the stream's one recording."""
    start: bool = False
    end: bool = False
    partial_ms: Any = None
    """The request parameter as sent: checked here."""
    request: Any = None
    """What the adapter needs to answer it (its request); never read here."""

    @property
    def sequence(self) -> str:
        return f"sequence {self.sequence_id!r}" if self.sequence_id else "the stream's recording"


@dataclass(frozen=True)
class Heard:
    """A sound of ``piece``'s sequence, heard: whole, or as far as it went (``partial``)."""

    piece: Piece
    row: np.ndarray
    """What the model made of the sound: float32, a classifier's probabilities ``[classes]``."""
    start_s: float
    end_s: float
    partial: bool = False


@dataclass(frozen=True)
class SequenceEnded:
    """``piece`` ended its sequence, whose every sound has been heard."""

    piece: Piece


@dataclass(frozen=True)
class SequenceFailed:
    """``piece`` was refused: its sequence is over, the stream goes on."""

    piece: Piece
    error: ServiceError


Event = Heard | SequenceEnded | SequenceFailed

_FAILED_KEPT = 1024
"""Refused sequences a stream remembers: a bound on what a client can make it hold."""


@dataclass
class _Sequence:
    segmenter: StreamSegmenter
    sample_rate: int
    partial_at_s: float = 0.0
    """Recording time of the next partial response, when they are asked for."""
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    """(recording time at a piece's end, when it arrived) of the pieces still held."""

    def arrived(self, end_s: float) -> float:
        """When the audio up to ``end_s`` had arrived."""
        index = bisect.bisect_left(self.arrivals, (end_s, -np.inf))
        return self.arrivals[min(index, len(self.arrivals) - 1)][1]

    def forget_arrivals(self) -> None:
        """Keep the arrivals of the audio the segmenter still holds, and the last one."""
        held_from_s = self.segmenter.heard_s - self.segmenter.held_s
        keep = bisect.bisect_left(self.arrivals, (held_from_s, -np.inf))
        del self.arrivals[: min(keep, len(self.arrivals) - 1)]


class LiveStream:
    """One stream's sequences: :meth:`events` answers its pieces as they come."""

    def __init__(
        self,
        *,
        model_name: str,
        front_end: StreamFrontEnd,
        settings: TransformerSettings,
        classify: Classify,
        run: Run,
        options: SegmentOptions,
    ) -> None:
        self.model_name = model_name
        self.front_end = front_end
        self.settings = settings
        self.classify = classify
        self.run = run
        self.options = options
        self._sequences: dict[Hashable, _Sequence] = {}
        self._failed: dict[Hashable, None] = {}
        """Sequences refused, the latest ``_FAILED_KEPT``: their pieces are refused until one starts them anew."""

    async def events(self, pieces: AsyncIterator[Piece]) -> AsyncIterator[Event]:
        """The events of ``pieces``, in order; raises :class:`StreamIdle` when none comes for ``stream_idle_s``."""
        pieces = aiter(pieces)
        try:
            while True:
                try:
                    piece = await asyncio.wait_for(anext(pieces), self.settings.stream_idle_s)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    self._refused("stream_idle_s")
                    raise StreamIdle(
                        f"nothing received for {self.settings.stream_idle_s:g} s (stream_idle_s)"
                    ) from None
                try:
                    async for event in self._events_of(piece):
                        yield event
                except (ServiceError, InvalidAudioError) as error:
                    refusal = type(error) if isinstance(error, ServiceError) else BadRequest
                    if not isinstance(error, StreamLimit):  # a bound counts its refusals by its setting
                        self._refused("bad_piece")
                    self._fail(piece.sequence_id)
                    yield SequenceFailed(piece, refusal(f"{piece.sequence}: {error}"))
        finally:
            STREAM_SEQUENCES.labels(self.model_name).dec(len(self._sequences))
            self._sequences.clear()

    async def _events_of(self, piece: Piece) -> AsyncIterator[Event]:
        key = piece.sequence_id
        if key in self._failed and not piece.start:
            raise BadRequest("it was refused before: start it anew (sequence_start)")
        self._failed.pop(key, None)
        partial_ms = piece.partial_ms
        if partial_ms is not None and (
            isinstance(partial_ms, bool) or not isinstance(partial_ms, int) or partial_ms < 10
        ):
            raise BadRequest(f"'{PARTIAL_PARAMETER}' must be a whole number of ms, 10 or more, got {partial_ms!r}")
        waveform, sample_rate = await self.run(piece.decode)
        sequence = self._sequences.get(key)
        if sequence is None or piece.start:
            sequence = self._begin(piece, sample_rate)
        if sample_rate != sequence.sample_rate:
            raise BadRequest(f"a piece at {sample_rate} Hz after pieces at {sequence.sample_rate} Hz")
        held_s = sequence.segmenter.held_s + len(waveform) / sample_rate
        if held_s > self.settings.sequence_max_held_s:
            self._refused("sequence_max_held_s")
            raise StreamLimit(
                f"the server would hold {held_s:.1f} s of its audio, over the limit of "
                f"{self.settings.sequence_max_held_s:g} s (sequence_max_held_s)"
            )
        sounds = await self.run(functools.partial(sequence.segmenter.push, waveform, last=piece.end))
        sequence.arrivals.append((sequence.segmenter.heard_s, time.monotonic()))
        if sounds:
            probabilities = await self.classify(np.stack([sound.features for sound in sounds]))
            for sound, row in zip(sounds, probabilities, strict=True):
                STREAM_RESPONSE_DELAY_SECONDS.labels(self.model_name).observe(
                    time.monotonic() - sequence.arrived(sound.end_s)
                )
                yield Heard(piece, row, sound.start_s, sound.end_s)
        sequence.forget_arrivals()
        if partial_ms is not None and not piece.end and sequence.segmenter.heard_s >= sequence.partial_at_s:
            sequence.partial_at_s = sequence.segmenter.heard_s + partial_ms / 1000
            going_on: Sound | None = await self.run(sequence.segmenter.going_on)
            if going_on is not None:
                (row,) = await self.classify(going_on.features[np.newaxis])
                yield Heard(piece, row, going_on.start_s, going_on.end_s, partial=True)
        if piece.end:
            self._end(key)
            yield SequenceEnded(piece)

    def _begin(self, piece: Piece, sample_rate: int) -> _Sequence:
        if piece.sequence_id not in self._sequences:
            if len(self._sequences) >= self.settings.stream_max_sequences:
                self._refused("stream_max_sequences")
                raise StreamLimit(
                    f"the stream holds {len(self._sequences)} sequences, its limit "
                    f"(stream_max_sequences {self.settings.stream_max_sequences})"
                )
            STREAM_SEQUENCES.labels(self.model_name).inc()
        segmenter = StreamSegmenter(self.front_end, self.options, sample_rate=sample_rate)
        sequence = self._sequences[piece.sequence_id] = _Sequence(segmenter, sample_rate)
        return sequence

    def _end(self, key: Hashable) -> None:
        if self._sequences.pop(key, None) is not None:
            STREAM_SEQUENCES.labels(self.model_name).dec()

    def _fail(self, key: Hashable) -> None:
        self._end(key)
        self._failed[key] = None
        if len(self._failed) > _FAILED_KEPT:
            del self._failed[next(iter(self._failed))]

    def _refused(self, setting: str) -> None:
        STREAM_REFUSALS.labels(self.model_name, setting).inc()
