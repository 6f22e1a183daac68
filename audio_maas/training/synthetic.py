"""Synthetic training data: spoken digits from espeak-ng, and silence for ``unknown``.

Spoken digits: voices FSDD lacks (women, children, accents).
espeak-ng is a formant synthesiser; its speech is robotic, but its voice variants span pitch
and formant ranges that FSDD's six men do not, which is what a digit model needs to see.
A fixed set of voices is held out of training so their accuracy measures unseen voices.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile

from audio_maas.features.spec import FeatureSpec
from audio_maas.training.dataset import DIGIT_LABELS, UNKNOWN_LABEL, Utterance

__all__ = [
    "ESPEAK",
    "HELD_OUT_VARIANTS",
    "TRAIN_VARIANTS",
    "espeak_available",
    "silences",
    "synthesize",
    "synthetic_digits",
]

ESPEAK = "espeak-ng"

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
"""espeak-ng's English accents."""

TRAIN_VARIANTS = ["f1", "f2", "f3", "f4", "m1", "m2", "m3", "m4", "m5", "m6", "Annie", "linda", "belinda", "aunty"]
"""Voice variants used as training data."""

HELD_OUT_VARIANTS = ["f5", "m7", "anika", "grandma"]
"""Voice variants never trained on: their accuracy is our measure of unseen (synthetic) voices."""


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def synthesize(*, text: str, voice: str, pitch: int, words_per_minute: int) -> bytes:
    """Speak ``text`` with espeak-ng; returns a 22.05 kHz mono 16-bit WAV file as bytes."""
    result = subprocess.run(
        [ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def synthetic_digits(*, variants: Iterable[str], takes: int, seed: int) -> list[Utterance]:
    """Every digit in every accent and voice variant, ``takes`` times at random pitch and speed.

    The speaker of each utterance is ``espeak:{accent}+{variant}``.
    """
    if not espeak_available():
        raise RuntimeError(f"{ESPEAK} is not installed (Debian: apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    jobs = [
        (digit, accent, variant, take, int(rng.integers(25, 95)), int(rng.integers(110, 210)))
        for variant in variants
        for accent in ACCENTS
        for digit in range(10)
        for take in range(takes)
    ]

    def run(job: tuple[int, str, str, int, int, int]) -> Utterance:
        digit, accent, variant, take, pitch, speed = job
        data = synthesize(text=DIGIT_WORDS[digit], voice=f"{accent}+{variant}", pitch=pitch, words_per_minute=speed)
        speaker = f"espeak:{accent}+{variant}"
        return Utterance(
            name=f"{digit}_{speaker}_{take}", label=DIGIT_LABELS[digit], speaker=speaker, index=take, data=data
        )

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(run, jobs))


def silences(spec: FeatureSpec, *, count: int, seed: int) -> list[Utterance]:
    """``count`` clips of nothing, labelled ``unknown``: digital silence, and hiss from -100 to
    -60 dBFS, of random lengths up to two clips. Recorded background noise is loud once the
    front end has normalised its gain; these teach the model that a recording of nothing is
    ``unknown`` too, not the digit or class its empty spectrogram happens to look like."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        samples = int(rng.integers(spec.n_fft, 2 * spec.clip_samples))
        level = 0.0 if i % 2 == 0 else 10 ** (rng.uniform(-100, -60) / 20)
        waveform = (level * rng.standard_normal(samples)).astype(np.float32)
        buffer = io.BytesIO()
        # Sun AU, not WAV: libsndfile stamps a float WAV's PEAK chunk with the time of writing, and
        # the same clip must be the same bytes in every run (encoder outputs are cached by them).
        soundfile.write(buffer, waveform, spec.sample_rate, format="AU", subtype="FLOAT")
        clips.append(
            Utterance(name=f"silence_{i}", label=UNKNOWN_LABEL, speaker="synthetic:silence", index=i,
                      data=buffer.getvalue())
        )  # fmt: skip
    return clips
