"""The live stream's logic (``audio_maas.transformer.live``) on its own: sequences, partial
answers, the bounds, a bad piece and a vanished caller, with the real front end and segmenter of
the bundled digits model and a fake classifier in place of the predictor, so each rule is tested
apart from the servers. ``tests/test_live.py`` runs the same through the real service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.segment import SegmentOptions
from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.errors import BadRequest, StreamIdle, StreamLimit
from audio_maas.transformer.live import Event, Heard, LiveStream, Piece, SequenceEnded, SequenceFailed
from audio_maas.transformer.settings import TransformerSettings
from tests.conftest import BUNDLED_MODEL, tone

RATE = 8000
PIECE = 800  # 0.1 s
MODEL = "fake"


def _classify(features: np.ndarray) -> Any:
    """A fake classifier of two classes: 1 when a row is louder than the mean of its features, else 0."""

    async def probabilities() -> np.ndarray:
        loud = features.reshape(len(features), -1).max(axis=1) > features.mean()
        return np.eye(2, dtype=np.float32)[loud.astype(int)]

    return probabilities()


async def _run(function: Callable[[], Any]) -> Any:
    return function()


def _recording(sounds: int, *, seed: int) -> np.ndarray:
    """``sounds`` tones of 0.3 s, each after 0.5 s of quiet noise, and 0.5 s of it at the end."""
    rng = np.random.default_rng(seed)
    parts = []
    for index in range(sounds):
        parts += [
            0.002 * rng.standard_normal(RATE // 2),
            tone(frequency_hz=500 + 200 * index, seconds=0.3, sample_rate=RATE),
        ]
    parts.append(0.002 * rng.standard_normal(RATE // 2))
    return np.concatenate(parts).astype(np.float32)


def _pieces(audio: np.ndarray, sequence_id: int, **parameters: Any) -> list[Piece]:
    starts = range(0, len(audio), PIECE)
    return [
        Piece(
            decode=lambda piece=audio[i : i + PIECE]: (piece, RATE),
            sequence_id=sequence_id,
            start=i == 0,
            end=i == starts[-1],
            **parameters,
        )
        for i in starts
    ]


def _interleaved(*sequences: list[Piece]) -> list[Piece]:
    """One piece of each sequence in turn, as a gateway carrying several callers sends them."""
    longest = max(len(pieces) for pieces in sequences)
    return [pieces[i] for i in range(longest) for pieces in sequences if i < len(pieces)]


OPTIONS = SegmentOptions.for_spec(FeatureSpec.read(BUNDLED_MODEL))


async def _async(pieces: Iterable[Piece]) -> AsyncIterator[Piece]:
    for piece in pieces:
        yield piece


def _events(pieces: Iterable[Piece], **settings: Any) -> list[Event]:
    stream = LiveStream(
        model_name=MODEL,
        front_end=FrontEnd(FeatureSpec.read(BUNDLED_MODEL)),
        settings=TransformerSettings(model_dir=BUNDLED_MODEL, **settings),
        classify=_classify,
        run=_run,
        options=OPTIONS,
    )

    async def collect() -> list[Event]:
        return [event async for event in stream.events(_async(pieces))]

    return asyncio.run(collect())


def _heard(events: list[Event], sequence_id: int, *, partial: bool = False) -> list[tuple[float, float]]:
    return [
        (round(event.start_s, 3), round(event.end_s, 3))
        for event in events
        if isinstance(event, Heard) and event.piece.sequence_id == sequence_id and event.partial == partial
    ]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"model": MODEL, **labels}) or 0.0


def test_each_sound_is_heard_once_when_it_ends_and_the_sequence_end_is_answered() -> None:
    events = _events(_pieces(_recording(3, seed=0), 1))
    heard = _heard(events, 1)
    assert len(heard) == 3
    for index, (start_s, end_s) in enumerate(heard):  # each tone from 0.5 + 0.8 i s, 0.3 s long
        assert abs(start_s - (0.5 + 0.8 * index)) < 0.05 and abs(end_s - (0.8 + 0.8 * index)) < 0.05
    assert isinstance(events[-1], SequenceEnded) and events[-1].piece.end
    assert all(isinstance(event, Heard) for event in events[:-1])


def test_sequences_interleaved_on_one_stream_are_heard_as_each_alone() -> None:
    recordings = {key: _recording(key, seed=key) for key in (1, 2, 3)}
    alone = {key: _heard(_events(_pieces(audio, key)), key) for key, audio in recordings.items()}
    together = _events(_interleaved(*(_pieces(audio, key) for key, audio in recordings.items())))
    assert {key: _heard(together, key) for key in recordings} == alone
    assert sorted(event.piece.sequence_id for event in together if isinstance(event, SequenceEnded)) == [1, 2, 3]
    assert _metric("audio_maas_stream_sequences_open") == 0


def test_partial_answers_come_while_a_sound_goes_on_and_before_its_own() -> None:
    events = _events(_pieces(_recording(2, seed=1), 1, partial_ms=100))
    final, partial = _heard(events, 1), _heard(events, 1, partial=True)
    assert final == _heard(_events(_pieces(_recording(2, seed=1), 1)), 1)
    assert partial and {start for start, _ in partial} <= {start for start, _ in final}
    for start, end in partial:  # before the sound's own answer, heard no further than its end
        own = next(
            i
            for i, event in enumerate(events)
            if isinstance(event, Heard) and not event.partial and round(event.start_s, 3) == start
        )
        first = next(
            i
            for i, event in enumerate(events)
            if isinstance(event, Heard) and event.partial and round(event.start_s, 3) == start
        )
        assert first < own and end <= final[[s for s, _ in final].index(start)][1] + 0.1


def test_a_bad_piece_fails_its_sequence_alone_which_must_start_anew() -> None:
    def garbage() -> tuple[np.ndarray, int]:
        raise BadRequest("element 0: could not decode audio (204 bytes)")

    good = _pieces(_recording(2, seed=2), 1)
    bad = _pieces(_recording(2, seed=3), 2)
    bad[3] = Piece(decode=garbage, sequence_id=2)
    before = _metric("audio_maas_stream_refusals_total", setting="bad_piece")
    events = _events(_interleaved(good, bad))
    failed = [event for event in events if isinstance(event, SequenceFailed)]
    assert [str(event.error) for event in failed[:2]] == [
        "sequence 2: element 0: could not decode audio (204 bytes)",
        "sequence 2: it was refused before: start it anew (sequence_start)",
    ]
    assert all(isinstance(event.error, BadRequest) for event in failed)
    assert len(failed) == len(bad) - 3  # the bad piece and every later one of its sequence
    assert _heard(events, 1) == _heard(_events(good), 1)
    assert [event.piece.sequence_id for event in events if isinstance(event, SequenceEnded)] == [1]
    assert _metric("audio_maas_stream_refusals_total", setting="bad_piece") - before == len(failed)

    anew = _events([bad[3], *_pieces(_recording(2, seed=3), 2)])  # started again: heard as a new recording
    assert len(_heard(anew, 2)) == 2


def test_a_piece_at_another_rate_or_non_finite_fails_its_sequence() -> None:
    pieces = _pieces(_recording(1, seed=4), 5)
    pieces[2] = Piece(decode=lambda: (np.zeros(PIECE, np.float32), 2 * RATE), sequence_id=5)
    pieces[4] = Piece(decode=lambda: (np.full(PIECE, np.nan, np.float32), RATE), sequence_id=5, start=True)
    failed = [str(event.error) for event in _events(pieces) if isinstance(event, SequenceFailed)]
    assert failed[0] == "sequence 5: a piece at 16000 Hz after pieces at 8000 Hz"
    assert failed[2].startswith("sequence 5: ") and "finite" in failed[2]


def test_a_sequence_holding_too_much_audio_is_refused_naming_the_setting() -> None:
    long = Piece(decode=lambda: (np.zeros(11 * RATE, np.float32), RATE), sequence_id=4, start=True)
    events = _events([long, *_pieces(_recording(1, seed=5), 1)], sequence_max_held_s=10)
    (failed,) = [event for event in events if isinstance(event, SequenceFailed)]
    assert isinstance(failed.error, StreamLimit)
    assert str(failed.error) == (
        "sequence 4: the server would hold 11.0 s of its audio, over the limit of 10 s (sequence_max_held_s)"
    )
    assert len(_heard(events, 1)) == 1


def test_one_sequence_more_than_the_stream_holds_is_refused_and_the_others_go_on() -> None:
    recordings = [_pieces(_recording(1, seed=key), key) for key in (1, 2, 3)]
    events = _events(_interleaved(*recordings), stream_max_sequences=2)
    failed = [event for event in events if isinstance(event, SequenceFailed)]
    assert str(failed[0].error) == "sequence 3: the stream holds 2 sequences, its limit (stream_max_sequences 2)"
    assert {event.piece.sequence_id for event in failed} == {3}
    assert [len(_heard(events, key)) for key in (1, 2)] == [1, 1]


def test_a_silent_stream_ends_and_frees_its_sequences() -> None:
    async def then_silence() -> AsyncIterator[Piece]:
        for piece in _pieces(_recording(2, seed=6), 1)[:5]:
            yield piece
        await asyncio.sleep(10)

    stream = LiveStream(
        model_name=MODEL,
        front_end=FrontEnd(FeatureSpec.read(BUNDLED_MODEL)),
        settings=TransformerSettings(model_dir=BUNDLED_MODEL, stream_idle_s=0.2),
        classify=_classify,
        run=_run,
        options=OPTIONS,
    )

    async def collect() -> None:
        async for _ in stream.events(then_silence()):
            assert _metric("audio_maas_stream_sequences_open") == 1

    with pytest.raises(StreamIdle, match=r"nothing received for 0.2 s \(stream_idle_s\)"):
        asyncio.run(collect())
    assert _metric("audio_maas_stream_sequences_open") == 0


def test_a_caller_that_vanishes_leaves_nothing_held() -> None:
    """The server closes the events of a stream whose caller went: its sequences are let go."""
    stream = LiveStream(
        model_name=MODEL,
        front_end=FrontEnd(FeatureSpec.read(BUNDLED_MODEL)),
        settings=TransformerSettings(model_dir=BUNDLED_MODEL),
        classify=_classify,
        run=_run,
        options=OPTIONS,
    )
    pieces = _interleaved(_pieces(_recording(3, seed=7), 1), _pieces(_recording(3, seed=8), 2))

    async def vanish() -> None:
        events = stream.events(_async(pieces))
        async for event in events:
            if isinstance(event, Heard):
                break
        assert _metric("audio_maas_stream_sequences_open") == 2
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(vanish())
    assert _metric("audio_maas_stream_sequences_open") == 0
