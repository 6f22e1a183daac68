"""Long recordings: find the sounds in one, so that each is classified as a clip of its own.

Energy activity detection on the waveform at the model's rate, after the model's band-pass. The
level of each frame (RMS of 25 ms, every 10 ms, median over 50 ms so that a click or a dip does
not count) is compared with the recording's loudest frame and with its noise floor (the 2nd
percentile of levels). A sound is a run of frames within ``threshold_db`` of the loudest and a
third of ``snr_db`` above the floor that somewhere rises ``snr_db`` above it: the lower bar keeps
a word's quiet ends, the higher one keeps noise out. Sounds closer than ``min_silence_s`` join;
shorter than ``min_segment_s`` are dropped; one longer than the model's clip is cut at its
quietest frames until every piece fits. Each segment then goes through the model's own front end
(:meth:`~audio_maas.features.frontend.FrontEnd.clip_from_mono`) exactly as a recording of that one sound
would, with a little of the audio around it, so a model sees a segment as it saw its training clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np
import scipy.ndimage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audio_maas.features.audio import InvalidAudioError
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec

__all__ = [
    "SEGMENT_PARAMETER",
    "Segment",
    "SegmentOptions",
    "TooManySegmentsError",
    "find_segments",
    "frame_levels_db",
    "segment_features",
    "segment_options",
]

SEGMENT_PARAMETER = "segment"
"""Request parameter (bool): answer each audio element's segments as well."""
_PREFIX = "segment_"
"""Request parameters ``segment_<option>`` set the :class:`SegmentOptions` of one request."""

_FRAME_S = 0.025
_HOP_S = 0.010
_SMOOTH_FRAMES = 5
_FLOOR_PERCENTILE = 2
"""The noise floor: low enough that a sound filling nearly all of a recording (one word, tightly
cut) still stands above it; the 10th percentile missed 2 of FSDD's 300 test clips."""
_CONTEXT_S = 0.05
"""Audio kept either side of a segment when it is classified (never past the middle of a gap)."""
_WORD_CLIP_S = 2.0
"""Models of clips up to this long are taken for words; longer ones for sound events."""


class SegmentOptions(BaseModel):
    """How a recording is cut into sounds. Each is the request parameter ``segment_<name>``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    threshold_db: float = Field(default=35.0, gt=0, le=120)
    """A sound's frames are at most this many dB below the recording's loudest frame."""
    snr_db: float = Field(default=10.0, ge=0, le=60)
    """... and rise this many dB above its noise floor (0: no floor, as for steady sounds like rain)."""
    min_silence_s: float = Field(default=0.1, gt=0, le=10)
    """Sounds closer than this are one."""
    min_segment_s: float = Field(default=0.1, gt=0, le=10)
    """Shorter sounds are left out (clicks, breaths)."""
    max_segments: int = Field(default=64, ge=1, le=1024)
    """More segments in one element is refused (400), not cut short."""

    @classmethod
    def for_spec(cls, spec: FeatureSpec, **overrides: Any) -> SegmentOptions:
        """The defaults for a model: words for clips up to 2 s (a 0.1 s pause ends one, and a word
        stands 10 dB above the noise), sound events for longer clips (a pause of a tenth of the
        clip ends one, and a steady sound is an event: no noise floor)."""
        if spec.clip_s <= _WORD_CLIP_S:
            return cls(**overrides)
        return cls(**{"snr_db": 0.0, "min_silence_s": round(spec.clip_s / 10, 3), **overrides})


class TooManySegmentsError(InvalidAudioError):
    """A recording with more segments than ``SegmentOptions.max_segments``."""


@dataclass(frozen=True)
class Segment:
    """One sound: samples ``[start, end)`` of the waveform at the model's rate, and the wider
    ``[context_start, context_end)`` that is classified."""

    start: int
    end: int
    context_start: int
    context_end: int


def segment_options(parameters: dict[str, Any], spec: FeatureSpec) -> SegmentOptions | None:
    """The request's segmentation: None unless ``segment`` is true. ``parameters``: name -> value.

    Raises ``ValueError`` naming the parameter for a value of the wrong type or range, an unknown
    ``segment_*`` name, or a ``segment_*`` option without ``segment``.
    """
    segment = parameters.get(SEGMENT_PARAMETER, False)
    if not isinstance(segment, bool):
        raise ValueError(f"request parameter '{SEGMENT_PARAMETER}' must be true or false, got {segment!r}")
    options = {name.removeprefix(_PREFIX): value for name, value in parameters.items() if name.startswith(_PREFIX)}
    if not segment:
        if options:
            raise ValueError(f"request parameter '{_PREFIX}{next(iter(options))}' needs '{SEGMENT_PARAMETER}': true")
        return None
    try:
        return SegmentOptions.for_spec(spec, **options)
    except ValidationError as error:
        problem = error.errors()[0]
        name = f"{_PREFIX}{problem['loc'][0]}" if problem["loc"] else SEGMENT_PARAMETER
        raise ValueError(f"request parameter '{name}': {problem['msg']}, got {problem['input']!r}") from None


def segment_features(
    front_end: FrontEnd, *, waveform: np.ndarray, sample_rate: int, options: SegmentOptions
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Features float32 ``[1 + segments, frames, bins]``: the whole recording's row (as it is
    classified without segmentation), then one per segment; and each segment's ``(start_s, end_s)``.

    ``waveform`` as :meth:`FrontEnd.from_waveform` takes it. Raises :class:`InvalidAudioError`
    as that does, and :class:`TooManySegmentsError`.
    """
    spec = front_end.spec
    mono = front_end.to_model_rate(waveform=waveform, sample_rate=sample_rate)
    segments = find_segments(
        front_end.band_pass(mono), sample_rate=spec.sample_rate, max_s=spec.clip_s, options=options
    )
    if len(segments) > options.max_segments:
        raise TooManySegmentsError(
            f"{len(segments)} segments, over the limit of {options.max_segments} (request parameter "
            f"'{_PREFIX}max_segments')"
        )
    clips = [mono] + [mono[s.context_start : s.context_end] for s in segments]
    features = np.stack([front_end.featurise(front_end.clip_from_mono(clip)) for clip in clips])
    return features, [(s.start / spec.sample_rate, s.end / spec.sample_rate) for s in segments]


def frame_levels_db(waveform: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """The level of each frame of ``waveform`` (dB: RMS of 25 ms every 10 ms, median over 50 ms)."""
    frame = max(1, round(_FRAME_S * sample_rate))
    hop = max(1, round(_HOP_S * sample_rate))
    rms = librosa.feature.rms(y=waveform, frame_length=frame, hop_length=hop, center=True)[0]
    return np.asarray(
        scipy.ndimage.median_filter(20 * np.log10(np.maximum(rms, 1e-10)), _SMOOTH_FRAMES, mode="nearest")
    )


def find_segments(
    waveform: np.ndarray,
    *,
    sample_rate: int,
    max_s: float,
    options: SegmentOptions,
    level_db: np.ndarray | None = None,
    loudest_db: float | None = None,
) -> list[Segment]:
    """The sounds in ``waveform`` (mono float32 at ``sample_rate``, band-passed as the model's
    front end does), in time order, none overlapping, none longer than ``max_s``. ``level_db``:
    its :func:`frame_levels_db`, when the caller has them; ``loudest_db``: the loudest frame of
    the recording when ``waveform`` is only part of it (a live stream's loudest so far), if louder
    than any of ``waveform``'s."""
    hop = max(1, round(_HOP_S * sample_rate))
    if level_db is None:
        level_db = frame_levels_db(waveform, sample_rate=sample_rate)
    floor_db = float(np.percentile(level_db, _FLOOR_PERCENTILE))
    loud_enough_db = max(float(level_db.max()), loudest_db or -np.inf) - options.threshold_db
    peak_db = max(loud_enough_db, floor_db + options.snr_db)
    runs = [
        (first, end)
        for first, end in _runs(level_db > max(loud_enough_db, floor_db + options.snr_db / 3))
        if level_db[first:end].max() > peak_db
    ]
    runs = _joined(runs, max_gap=round(options.min_silence_s / _HOP_S))
    runs = [run for run in runs if run[1] - run[0] >= round(options.min_segment_s / _HOP_S)]
    longest = max(2, int(max_s / _HOP_S))
    runs = [piece for run in runs for piece in _cut(run, level_db, longest=longest)]
    spans = [(first * hop, min(len(waveform), end * hop)) for first, end in runs]
    context = round(_CONTEXT_S * sample_rate)
    segments = []
    for i, (start, end) in enumerate(spans):
        before = spans[i - 1][1] if i else 0
        after = spans[i + 1][0] if i + 1 < len(spans) else len(waveform)
        segments.append(
            Segment(
                start=start,
                end=end,
                context_start=max(start - context, (before + start) // 2),
                context_end=min(end + context, (end + after + 1) // 2),
            )
        )
    return segments


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``[first, end)`` frame indices of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _joined(runs: list[tuple[int, int]], *, max_gap: int) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for first, end in runs:
        if joined and first - joined[-1][1] < max_gap:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((first, end))
    return joined


def _cut(run: tuple[int, int], level_db: np.ndarray, *, longest: int) -> list[tuple[int, int]]:
    """``run`` cut into pieces of at most ``longest`` frames, each cut at the quietest frame between
    half and all of ``longest`` from the last (the latest of equals, so a steady sound is cut evenly)."""
    first, end = run
    pieces = []
    while end - first > longest:
        window = level_db[first + longest // 2 : first + longest + 1]
        cut = first + longest // 2 + len(window) - 1 - int(np.argmin(window[::-1]))
        pieces.append((first, cut))
        first = cut
    return [*pieces, (first, end)]
