"""Live audio: the sounds of a recording that arrives in pieces, each featurised as soon as it ends.

The same segmentation as :func:`~audio_maas.features.segment.segment_features` runs on a window
of the most recent audio, at least ``CONTEXT_S`` long once that much has arrived: its noise floor
is the window's, its loudest frame the loudest so far. What a live stream cannot know is what
comes later: before anything louder has been heard, steady noise at the start can be a sound
(to a model of events, which sets no floor), where hindsight over the whole recording says not. A sound is final once
``min_silence_s`` of quiet has followed it, so no later audio can join it, or when the recording
ends; it is then featurised by the model's own front end, exactly as ``segment`` featurises it,
and never answered again. Audio arriving at another rate is resampled with soxr's streaming
resampler, which carries its filter across pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soxr

from audio_maas.features.audio import mono_at
from audio_maas.features.segment import SegmentOptions, find_segments, frame_levels_db

__all__ = ["CONTEXT_S", "Sound", "StreamFrontEnd", "StreamSegmenter"]


class _Spec(Protocol):
    @property
    def sample_rate(self) -> int: ...
    @property
    def n_fft(self) -> int: ...
    @property
    def clip_s(self) -> float: ...


class StreamFrontEnd(Protocol):
    """What the segmenter asks of a front end: a classifier's
    :class:`~audio_maas.features.frontend.FrontEnd`, or a speech recogniser's
    :class:`~audio_maas.features.transcript.UtteranceFrontEnd`."""

    @property
    def spec(self) -> _Spec: ...
    def band_pass(self, waveform: np.ndarray, /) -> np.ndarray: ...
    def clip_from_mono(self, waveform: np.ndarray, /) -> np.ndarray: ...
    def featurise(self, clip: np.ndarray, /) -> np.ndarray: ...


CONTEXT_S = 5.0
"""Audio kept for the level statistics, beyond what a sound still going on needs."""
_SETTLE_S = 0.06
"""What the level of a frame still waits for after it: half the RMS frame and of the median filter."""


@dataclass(frozen=True)
class Sound:
    """One sound of the stream: its features, and where it lies on the stream's clock."""

    features: np.ndarray
    start_s: float
    end_s: float


class StreamSegmenter:
    """Feed it the pieces of one recording in order (:meth:`push`); it answers the sounds that
    have ended. Bounded: it holds at most the sound going on and ``CONTEXT_S`` more."""

    def __init__(self, front_end: StreamFrontEnd, options: SegmentOptions, *, sample_rate: int) -> None:
        self.front_end = front_end
        self.options = options
        self.sample_rate = sample_rate
        rate = front_end.spec.sample_rate
        self._resampler = None if sample_rate == rate else soxr.ResampleStream(sample_rate, rate, 1, quality="HQ")
        self._audio = np.zeros(0, np.float32)
        """The stream at the model's rate, from its sample ``_first`` on."""
        self._first = 0
        self._answered_until = 0
        """Stream sample where the last sound answered ended: what lies before is never answered again."""
        self._pending: tuple[int, int] | None = None
        """The sound going on, if any: stream samples where its audio (with context) and it begin."""
        self._loudest_db = -np.inf

    @property
    def heard_s(self) -> float:
        """Seconds of the stream received so far, at the model's rate."""
        return (self._first + len(self._audio)) / self.front_end.spec.sample_rate

    def going_on(self) -> Sound | None:
        """The sound not ended yet, as heard so far (featurised as if it ended now), if there is one."""
        if self._pending is None:
            return None
        audio_from, start = self._pending
        clip = self.front_end.clip_from_mono(self._audio[audio_from - self._first :])
        rate = self.front_end.spec.sample_rate
        return Sound(self.front_end.featurise(clip), start / rate, self.heard_s)

    @property
    def held_s(self) -> float:
        """Seconds of audio held now."""
        return len(self._audio) / self.front_end.spec.sample_rate

    def push(self, waveform: np.ndarray, *, last: bool = False) -> list[Sound]:
        """The sounds that ended by the end of ``waveform`` (float ``[samples]`` or ``[samples,
        channels]`` at ``sample_rate``; may be empty when ``last``), in time order; with ``last``,
        every sound still going on too. Raises :class:`InvalidAudioError` for non-finite audio."""
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.size:
            mono = mono_at(waveform=waveform, sample_rate=self.sample_rate, rate=self.sample_rate, shortest=1)
        else:
            mono = np.zeros(0, np.float32)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        self._audio = np.concatenate([self._audio, mono.astype(np.float32, copy=False)])
        sounds = self._final_sounds(last=last)
        self._forget()
        return sounds

    def _final_sounds(self, *, last: bool) -> list[Sound]:
        spec = self.front_end.spec
        rate = spec.sample_rate
        self._pending = None
        if len(self._audio) < spec.n_fft:  # not one analysis window yet: nothing to hear
            return []
        filtered = self.front_end.band_pass(self._audio)
        level_db = frame_levels_db(filtered, sample_rate=rate)
        self._loudest_db = max(self._loudest_db, float(level_db.max()))
        segments = find_segments(
            filtered,
            sample_rate=rate,
            max_s=spec.clip_s,
            options=self.options,
            level_db=level_db,
            loudest_db=self._loudest_db,
        )
        settled = len(self._audio) - round((self.options.min_silence_s + _SETTLE_S) * rate)
        sounds = []
        for segment in segments:
            start, end = self._first + segment.start, self._first + segment.end
            if start < self._answered_until:
                continue  # answered already (its end may have moved since, with the statistics)
            if not last and segment.end > settled:
                self._pending = (self._first + segment.context_start, self._first + segment.start)
                break  # more audio may still join it; the later ones wait for it
            clip = self.front_end.clip_from_mono(self._audio[segment.context_start : segment.context_end])
            sounds.append(Sound(self.front_end.featurise(clip), start / rate, end / rate))
            self._answered_until = end
        return sounds

    def _forget(self) -> None:
        """Drop audio older than ``CONTEXT_S`` unless a sound still going on needs it."""
        rate = self.front_end.spec.sample_rate
        keep_from = max(self._first, self._first + len(self._audio) - round(CONTEXT_S * rate))
        if self._pending is not None:
            keep_from = min(keep_from, self._pending[0])
        if keep_from > self._first:
            self._audio = self._audio[keep_from - self._first :]
            self._first = keep_from
