"""Property tests: for any valid audio the front end returns finite features of the spec's shape;
for anything else, an InvalidAudioError and never another exception."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from audio_maas.features.audio import InvalidAudioError, decode
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from tests.conftest import encode

FRONT_END = FrontEnd(FeatureSpec())
SHAPE = FRONT_END.spec.feature_shape

sample_rates = st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000])
finite_samples = st.floats(min_value=-1.0, max_value=1.0, width=32, allow_nan=False)


def _shortest(sample_rate: int) -> int:
    """Samples in one analysis window at ``sample_rate``: the shortest audio the front end takes."""
    return math.ceil(FRONT_END.spec.n_fft * sample_rate / FRONT_END.spec.sample_rate)


@st.composite
def waveforms(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    sample_rate = draw(sample_rates)
    shortest = _shortest(sample_rate)
    samples = draw(st.integers(min_value=shortest, max_value=3 * sample_rate))
    channels = draw(st.integers(min_value=1, max_value=4))
    kind = draw(st.sampled_from(["random", "noise", "constant"]))
    if kind == "random":  # hypothesis-chosen values, kept short so the search stays fast
        samples = max(shortest, min(samples, 2000))
        waveform = draw(arrays(np.float32, (samples, channels), elements=finite_samples))
    elif kind == "noise":
        seed = draw(st.integers(0, 2**32 - 1))
        scale = draw(st.sampled_from([1e-6, 1e-3, 0.1, 1.0]))
        waveform = (np.random.default_rng(seed).standard_normal((samples, channels)) * scale).astype(np.float32)
    else:
        waveform = np.full((samples, channels), draw(finite_samples), np.float32)
    return waveform, sample_rate


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(waveforms())
def test_any_finite_waveform_gives_finite_features_of_the_spec_shape(case: tuple[np.ndarray, int]) -> None:
    waveform, sample_rate = case
    features = FRONT_END.from_waveform(waveform=waveform, sample_rate=sample_rate)
    assert features.shape == SHAPE
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(waveforms(), st.sampled_from([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")]))
def test_any_valid_encoded_file_gives_finite_features(case: tuple[np.ndarray, int], container: tuple[str, str]) -> None:
    waveform, sample_rate = case
    data = encode(np.clip(waveform, -1, 1), sample_rate=sample_rate, format=container[0], subtype=container[1])
    features = FRONT_END.from_bytes(data=data, max_duration_s=60)
    assert features.shape == SHAPE
    assert np.isfinite(features).all()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_either_decode_or_raise_invalid_audio(data: bytes) -> None:
    try:
        waveform, sample_rate = decode(data=data, max_duration_s=10)
    except InvalidAudioError:
        return
    assert waveform.ndim == 2 and len(waveform) > 0 and sample_rate > 0


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=256), st.integers(min_value=0, max_value=2000))
def test_corrupted_wav_files_raise_only_invalid_audio(noise: bytes, position: int) -> None:
    """Overwrite part of a valid WAV (header included) with random bytes."""
    data = bytearray(encode(np.zeros(1000, np.float32), sample_rate=8000, format="WAV", subtype="PCM_16"))
    position = min(position, len(data) - 1)
    data[position : position + len(noise)] = noise
    try:
        features = FRONT_END.from_bytes(data=bytes(data), max_duration_s=10)
    except InvalidAudioError:
        return
    assert features.shape == SHAPE and np.isfinite(features).all()


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=1, max_value=500),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.integers(min_value=0, max_value=499),
)
def test_any_non_finite_sample_is_rejected(length: int, bad: float, position: int) -> None:
    waveform = np.zeros(length, np.float32)
    waveform[position % length] = bad
    try:
        FRONT_END.from_waveform(waveform=waveform, sample_rate=8000)
    except InvalidAudioError as error:
        assert "NaN or infinite" in str(error)
    else:
        raise AssertionError("non-finite audio was accepted")


@settings(max_examples=40, deadline=None)
@given(sample_rates, st.data())
def test_audio_shorter_than_one_analysis_window_is_refused_naming_its_length(
    sample_rate: int, data: st.DataObject
) -> None:
    samples = data.draw(st.integers(min_value=1, max_value=_shortest(sample_rate) - 1))
    with pytest.raises(InvalidAudioError, match=r"ms long; at least 32 ms is needed"):
        FRONT_END.from_waveform(waveform=np.full(samples, 0.1, np.float32), sample_rate=sample_rate)
