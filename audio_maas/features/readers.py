"""What is read from frame-wise and tag outputs of the pretrained models (``interface.json``'s
``reader``): notes from note and onset posteriorgrams, a pitch track from pitch bins, top tags;
and, for a person reading a pitch track, its voiced stretches (``audio-maas predict``).

numpy alone at import: the client, which installs without scipy, reads pitch tracks here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_maas.protocol.notes import note_name

__all__ = [
    "VOICED_CONFIDENCE",
    "Note",
    "PitchSummary",
    "Stretch",
    "notes",
    "pitch_track",
    "top_tags",
    "voiced_stretches",
]

VOICED_CONFIDENCE = 0.5
"""Frames of a pitch track at least this confident are voiced (CREPE's own threshold)."""
VOICED_SHORTEST_S = 0.05
"""Stretches of voiced frames shorter than this are left out of a summary."""

Note = dict[str, float | int | str]
"""``{"start_s", "end_s", "midi", "name", "confidence"}``."""


def pitch_track(activation: np.ndarray, *, first_bin_cents: float, bin_cents: float) -> tuple[np.ndarray, np.ndarray]:
    """CREPE's decoding of pitch bins ``[frames, bins]``: the activation-weighted mean pitch of
    the nine bins around each frame's best, and that best bin's activation as confidence.
    Returns float32 ``(frequency_hz [frames], confidence [frames])``."""
    cents = np.pad(first_bin_cents + bin_cents * np.arange(activation.shape[1]), 4)
    padded = np.pad(activation, ((0, 0), (4, 4)))  # zero weight beyond the edges, as CREPE's slices
    best = activation.argmax(axis=1)
    near = best[:, None] + np.arange(9)[None, :]  # bins best-4..best+4, in padded indices
    weights = np.take_along_axis(padded, near, axis=1)
    mean_cents = (weights * cents[near]).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    frequency = 10 * 2 ** (mean_cents / 1200)
    return frequency.astype(np.float32), activation.max(axis=1).astype(np.float32)


def notes(
    note: np.ndarray,
    onset: np.ndarray,
    time_s: np.ndarray,
    *,
    frame_s: float,
    lowest_midi: int,
    onset_threshold: float = 0.5,
    frame_threshold: float = 0.3,
    shortest_s: float = 0.1277,
    energy_tolerance: int = 11,
) -> list[Note]:
    """Note events from basic-pitch's posteriorgrams ``note`` and ``onset`` (``[frames, keys]``,
    frame ``i`` at ``time_s[i]``), in time order. After basic-pitch's ``output_to_notes_polyphonic``
    (Apache-2.0) with its defaults: onsets are the peaks of the onset posteriorgram, and of
    sudden rises in the note posteriorgram, above ``onset_threshold``; a note lasts until its key
    stays under ``frame_threshold`` for ``energy_tolerance`` frames; then notes without an onset
    are taken from what energy remains, loudest first. Notes of ``shortest_s`` or less are dropped;
    confidence is the note posteriorgram's mean over the note."""
    import scipy.signal

    frames = note.shape[0]
    shortest = round(shortest_s / frame_s)
    onset = np.maximum(onset, _rises(note, onset))
    peaks = np.zeros_like(onset)
    rows, columns = scipy.signal.argrelmax(onset, axis=0)
    peaks[rows, columns] = onset[rows, columns]
    starts_at, keys_at = np.nonzero(peaks >= onset_threshold)
    remaining = note.astype(np.float64, copy=True)
    events: list[tuple[int, int, int]] = []

    for start, key in zip(starts_at[::-1], keys_at[::-1], strict=True):  # latest onsets first
        if start >= frames - 1:
            continue
        end, quiet = start + 1, 0
        while end < frames - 1 and quiet < energy_tolerance:
            quiet = quiet + 1 if remaining[end, key] < frame_threshold else 0
            end += 1
        end -= quiet
        if end - start <= shortest:
            continue
        remaining[start:end, max(0, key - 1) : key + 2] = 0  # the note and its neighbouring keys
        events.append((start, end, key))
    while remaining.max() > frame_threshold:  # basic-pitch's "melodia trick"
        middle, key = np.unravel_index(int(remaining.argmax()), remaining.shape)
        end = _extent(remaining, int(middle), int(key), +1, frame_threshold, energy_tolerance)
        start = _extent(remaining, int(middle), int(key), -1, frame_threshold, energy_tolerance)
        remaining[middle, key] = 0
        if end - start > shortest:
            events.append((start, end, int(key)))
    answered: list[Note] = []
    for start, end, key in sorted(events):
        midi = lowest_midi + int(key)
        answered.append({
            "start_s": round(float(time_s[start]), 3),
            "end_s": round(float(time_s[end]), 3),  # both walks stop before the last frame
            "midi": midi,
            "name": note_name(midi),
            "confidence": round(float(note[start:end, key].mean()), 3),
        })  # fmt: skip
    return answered


def _rises(note: np.ndarray, onset: np.ndarray, depth: int = 2) -> np.ndarray:
    """Onsets inferred from the note posteriorgram: its smallest rise over the last 1..``depth``
    frames, scaled to the onset posteriorgram's peak."""
    rises = []
    for lag in range(1, depth + 1):
        shifted = np.concatenate([np.zeros((lag, note.shape[1])), note])
        rises.append(shifted[lag:] - shifted[:-lag])
    rise = np.maximum(np.min(rises, axis=0), 0)
    rise[:depth] = 0
    peak = rise.max()
    return onset.max() * rise / peak if peak > 0 else rise


def _extent(remaining: np.ndarray, middle: int, key: int, step: int, threshold: float, tolerance: int) -> int:
    """Walk from ``middle`` in ``step``'s direction while ``key`` has energy (silencing it and its
    neighbours on the way): the end (exclusive, forward) or start (backward) of the note."""
    frames = remaining.shape[0]
    i, quiet = middle + step, 0
    while 0 < i < frames - 1 and quiet < tolerance:
        quiet = quiet + 1 if remaining[i, key] < threshold else 0
        remaining[i, max(0, key - 1) : key + 2] = 0
        i += step
    return i - quiet if step > 0 else i + 1 + quiet


def top_tags(scores: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` best of tag ``scores`` ``[tags]``, best first, as (label, score)."""
    best = np.argsort(scores)[::-1][:k]
    return [(labels[i], round(float(scores[i]), 4)) for i in best]


@dataclass(frozen=True)
class Stretch:
    """Voiced frames in a row near one note: where they lie, their median pitch, the nearest note."""

    start_s: float
    end_s: float
    median_hz: float
    note: str


@dataclass(frozen=True)
class PitchSummary:
    frame_s: float
    voiced: float
    """The share of frames voiced."""
    percentiles_hz: tuple[float, float, float] | None
    """5th, 50th and 95th percentile of the voiced frames' pitch; None when none is voiced."""
    stretches: list[Stretch]


def voiced_stretches(frequency_hz: np.ndarray, confidence: np.ndarray, time_s: np.ndarray) -> PitchSummary:
    """A pitch track (``frequency_hz``, ``confidence`` and ``time_s`` per frame) as a person reads
    it: its voiced frames, in stretches broken where the nearest note changes, each at least
    ``VOICED_SHORTEST_S`` long."""
    frame_s = float(np.median(np.diff(time_s))) if len(time_s) > 1 else VOICED_SHORTEST_S
    voiced = confidence >= VOICED_CONFIDENCE
    percentiles = None
    if voiced.any():
        low, median, high = np.percentile(frequency_hz[voiced], [5, 50, 95])
        percentiles = (float(low), float(median), float(high))
    nearest = np.round(12 * np.log2(np.maximum(frequency_hz, 1) / 440))
    steps = np.diff(nearest, prepend=nearest[:1]) != 0  # a new nearest note starts a new stretch
    edges = np.flatnonzero(np.concatenate([[True], (voiced[1:] != voiced[:-1]) | steps[1:], [True]]))
    shortest = max(1, round(VOICED_SHORTEST_S / frame_s))
    stretches = []
    for start, end in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if voiced[start] and end - start >= shortest:
            hz = float(np.median(frequency_hz[start:end]))
            stretches.append(
                Stretch(
                    float(time_s[start]),
                    float(time_s[end - 1]) + frame_s,
                    hz,
                    note_name(round(69 + 12 * np.log2(hz / 440))),
                )
            )
    return PitchSummary(frame_s, float(voiced.mean()) if len(voiced) else 0.0, percentiles, stretches)
