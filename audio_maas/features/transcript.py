"""Speech to text around a Whisper model (interface output ``kind`` ``transcript``): a recording
cut at its pauses into utterances of at most one window, and each utterance's tokens read back
as text.

- **Utterances**: the service's own segmenter (:func:`~audio_maas.features.segment.find_segments`)
  finds the stretches of sound, no longer than a window; consecutive ones join while the
  utterance still fits in one window (less a margin of context), so a cut always falls in a pause
  and no word is cut in two. A recording with no sound (silence, a steady noise like rain) has no
  utterance, and its text is empty without the model running.
- **Text**: GPT-2's byte-level tokens decoded to UTF-8 (written here: 10 lines, against a tokenizer
  library at run time); an utterance the model itself judges silent (openai-whisper's rule: the
  no-speech probability over 0.6 and the tokens' mean log-probability under -1) gives no text; a
  decoding that never ended and repeats itself is cut after the repeated part's first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from audio_maas.features.segment import SegmentOptions, find_segments

__all__ = [
    "UTTERANCE_OPTIONS",
    "Utterance",
    "UtteranceFrontEnd",
    "UtteranceSpec",
    "Vocabulary",
    "cut_repetition",
    "read_segments",
    "utterances",
]

UTTERANCE_OPTIONS = SegmentOptions(min_silence_s=0.3, max_segments=1024)
"""Speech: a pause of 0.3 s may end a sentence; an hour of speech has hundreds of pauses."""
CONTEXT_MARGIN_S = 1.0
"""Room left in a window for the audio kept around an utterance's sounds."""
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
LOOP_REPEATS = 3
"""A never-ending decoding whose last tokens repeat this many times is a loop."""


@dataclass(frozen=True)
class UtteranceSpec:
    """What the live segmenter reads of a speech recogniser's input (``StreamFrontEnd.spec``)."""

    sample_rate: int
    clip_s: float
    """The longest utterance: a longer one is cut at its quietest frames."""
    n_fft: int = 400
    """The shortest audio worth hearing: 25 ms."""


@dataclass(frozen=True)
class UtteranceFrontEnd:
    """Live speech (``audio_maas.features.stream``): each utterance heard as one window of the
    waveform, padded with silence, as :func:`utterances` cuts a whole recording."""

    spec: UtteranceSpec
    window: int

    def band_pass(self, waveform: np.ndarray, /) -> np.ndarray:
        return waveform

    def clip_from_mono(self, waveform: np.ndarray, /) -> np.ndarray:
        clip = np.zeros(self.window, np.float32)
        clip[: min(len(waveform), self.window)] = waveform[: self.window]
        return clip

    def featurise(self, clip: np.ndarray, /) -> np.ndarray:
        return clip


@dataclass(frozen=True)
class Utterance:
    """Samples ``[start, end)`` of the mono waveform: what the model hears."""

    start: int
    end: int


def utterances(mono: np.ndarray, *, sample_rate: int, window: int) -> list[Utterance]:
    """The utterances of ``mono`` (float32 at ``sample_rate``), in order, each at most ``window`` samples."""
    if not mono.size:
        return []
    longest_s = window / sample_rate - CONTEXT_MARGIN_S
    sounds = find_segments(mono, sample_rate=sample_rate, max_s=longest_s, options=UTTERANCE_OPTIONS)
    joined: list[Utterance] = []
    for sound in sounds:
        if joined and sound.context_end - joined[-1].start <= window:
            joined[-1] = Utterance(joined[-1].start, sound.context_end)
        else:
            joined.append(Utterance(sound.context_start, sound.context_end))
    return joined


class Vocabulary:
    """A model's tokens (its labels: GPT-2 byte-level tokens, id ``i`` the ``i``-th)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.end = tokens.index("<|endoftext|>")
        self._bytes = _unicode_to_byte()

    def text_ids(self, ids: np.ndarray) -> list[int]:
        """The text tokens of ``ids`` (float32 or int): those before the first end token, specials left out."""
        kept = []
        for token in np.asarray(ids).astype(np.int64).tolist():
            if token == self.end:
                break
            if token < self.end:
                kept.append(token)
        return kept

    def text(self, ids: np.ndarray) -> str:
        """The text of token ids, up to the first end token, specials left out."""
        return self.words(self.text_ids(ids))

    def words(self, text_ids: list[int]) -> str:
        """The text of text tokens (:meth:`text_ids`, :meth:`read`)."""
        data = bytes(self._bytes[char] for token in text_ids for char in self.tokens[token])
        return data.decode("utf-8", errors="replace").strip()

    def read(self, tokens: np.ndarray, *, no_speech: float, avg_logprob: float) -> list[int]:
        """One utterance's text tokens: none where the model judges it silent, a loop cut."""
        if no_speech > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD:
            return []
        ids = np.asarray(tokens).astype(np.int64)
        if not (ids == self.end).any():
            ids = cut_repetition(ids)
        return self.text_ids(ids)


def read_segments(
    vocabulary: Vocabulary, values: dict[str, np.ndarray], *, start_s: np.ndarray, end_s: np.ndarray
) -> list[dict[str, Any]]:
    """``{"start_s", "end_s", "text", "tokens", "avg_logprob", "no_speech_prob"}`` of each utterance
    with words, in order, from the model's ``tokens``, ``no_speech`` and ``avg_logprob`` for them."""
    segments = []
    for start, end, tokens, no_speech, logprob in zip(
        start_s.tolist(), end_s.tolist(), values["tokens"], values["no_speech"].tolist(),
        values["avg_logprob"].tolist(), strict=True,
    ):  # fmt: skip
        ids = vocabulary.read(tokens, no_speech=no_speech, avg_logprob=logprob)
        text = vocabulary.words(ids)
        if text:
            segments.append({"start_s": round(start, 3), "end_s": round(end, 3), "text": text, "tokens": ids,
                             "avg_logprob": round(logprob, 4), "no_speech_prob": round(no_speech, 4)})  # fmt: skip
    return segments


def cut_repetition(ids: np.ndarray, *, repeats: int = LOOP_REPEATS) -> np.ndarray:
    """``ids`` up to the first time of what its end repeats (``a b c d c d c d`` -> ``a b c d``),
    or all of them when the end does not repeat ``repeats`` times."""
    ids = np.asarray(ids)
    for period in range(1, len(ids) // repeats + 1):
        tail = ids[len(ids) - repeats * period :].reshape(repeats, period)
        if (tail == tail[-1]).all():
            start = len(ids) - repeats * period
            while start > 0 and ids[start - 1] == ids[start - 1 + period]:
                start -= 1
            return ids[: start + period]
    return ids


@cache
def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's mapping of bytes to printable characters, reversed: printable Latin-1 bytes stand for
    themselves, the others for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    mapping = {chr(b): b for b in printable}
    mapping.update({chr(256 + n): b for n, b in enumerate(others)})
    return mapping
