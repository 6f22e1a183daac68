"""Synthetic voices from the real espeak-ng binary."""

from __future__ import annotations

import numpy as np

from audio_maas.features.audio import decode
from audio_maas.features.frontend import FrontEnd
from audio_maas.training.synthetic import synthetic_digits


def test_espeak_speaks_every_digit_as_decodable_audio(front_end: FrontEnd) -> None:
    utterances = synthetic_digits(variants=["f2"], takes=1, seed=0)
    assert len(utterances) == 10 * 8  # ten digits in eight accents
    assert sorted({u.label for u in utterances}) == [str(d) for d in range(10)]
    assert all(u.speaker.startswith("espeak:") and u.speaker.endswith("+f2") for u in utterances)
    waveform, sample_rate = decode(data=utterances[0].data, max_duration_s=60)
    assert sample_rate == 22050 and 0.2 < len(waveform) / sample_rate < 2.0
    assert np.isfinite(front_end.from_bytes(data=utterances[0].data, max_duration_s=60)).all()


def test_synthesis_is_reproducible_for_a_seed() -> None:
    first = synthetic_digits(variants=["m3"], takes=1, seed=5)
    assert [u.data for u in first] == [u.data for u in synthetic_digits(variants=["m3"], takes=1, seed=5)]
