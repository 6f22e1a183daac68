"""The shared front end on known signals, every container format, and bad input."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal

from audio_maas.features.audio import AudioTooLongError, InvalidAudioError, decode
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from tests.conftest import encode, tone


def test_spec_round_trips_through_json_and_model_dir(tmp_path: Path) -> None:
    spec = FeatureSpec(feature="mfcc", n_mfcc=13, band_pass_hz=(100.0, 3000.0), pre_emphasis=0.97)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    spec.write(tmp_path)
    assert FeatureSpec.read(tmp_path) == spec


def test_spec_derives_sizes_from_settings() -> None:
    spec = FeatureSpec(sample_rate=16000, clip_s=0.5, hop_length=160, n_mels=64)
    assert spec.clip_samples == 8000
    assert spec.n_frames == 51
    assert spec.feature_shape == (51, 64)
    assert FeatureSpec(feature="mfcc", n_mfcc=13).n_bins == 13


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fmax": 5000.0}, "fmax"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"feature": "cqt"}, "feature"),
        ({"feature": "mfcc", "n_mfcc": 64}, "n_mfcc"),
        ({"band_pass_hz": (3000.0, 100.0)}, "band_pass_hz"),
        ({"pre_emphasis": 1.5}, "pre_emphasis"),
    ],
)
def test_spec_rejects_inconsistent_settings_naming_them(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureSpec(**changes)


def test_spec_from_json_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown FeatureSpec fields: hop"):
        FeatureSpec.from_json('{"hop": 10}')


def test_reading_a_model_dir_without_spec_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="feature spec"):
        FeatureSpec.read(tmp_path)


def test_features_have_the_spec_shape_and_dtype(front_end: FrontEnd) -> None:
    features = front_end.from_waveform(waveform=tone(frequency_hz=440, seconds=0.6, sample_rate=8000), sample_rate=8000)
    assert features.shape == front_end.spec.feature_shape
    assert features.dtype == np.float32


def test_pure_tone_peaks_in_the_mel_band_holding_its_frequency(spec: FeatureSpec) -> None:
    front_end = FrontEnd(dataclasses.replace(spec, trim_top_db=None))
    features = front_end.from_waveform(waveform=tone(frequency_hz=1000, seconds=1, sample_rate=8000), sample_rate=8000)
    centres = librosa.mel_frequencies(n_mels=spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax)[1:-1]
    expected_band = int(np.argmin(np.abs(centres - 1000)))
    middle = features[spec.n_frames // 2]
    assert abs(int(middle.argmax()) - expected_band) <= 1
    assert middle.max() - np.median(middle) > 30  # dB: a tone stands far above the other bands


def test_silence_gives_finite_features_at_the_floor(front_end: FrontEnd) -> None:
    features = front_end.from_waveform(waveform=np.zeros(8000, np.float32), sample_rate=8000)
    assert np.isfinite(features).all()
    assert np.ptp(features) == 0  # nothing but the floor


def test_the_band_pass_guard_against_subnormals_leaves_the_audio_as_it_was(front_end: FrontEnd) -> None:
    """A tone followed by digital silence (where the filter's state would decay into subnormals):
    the guarded filter answers what the plain filter does, to float32 precision, tail included."""
    burst = tone(frequency_hz=440, seconds=0.25, sample_rate=8000)
    audio = np.concatenate([burst, np.zeros(16000, np.float32)])
    assert front_end._band_pass is not None
    plain = scipy.signal.sosfilt(front_end._band_pass, audio).astype(np.float32)
    guarded = front_end.band_pass(audio)
    assert guarded.dtype == np.float32
    np.testing.assert_allclose(guarded, plain, rtol=0, atol=1e-12)
    assert np.abs(guarded[-8000:]).max() < 1e-12  # the silence stays silence


@pytest.mark.parametrize(("n_fft", "hop_length", "samples"), [(256, 80, 8000), (1024, 512, 220500), (400, 160, 999)])
def test_power_spectrogram_is_librosas_centred_stft(n_fft: int, hop_length: int, samples: int) -> None:
    """Our padding then librosa's uncentred STFT gives librosa's centred STFT, bit for bit, at
    the bundled models' settings and at lengths that are no multiple of the hop."""
    spec = FeatureSpec(n_fft=n_fft, hop_length=hop_length)
    front_end = FrontEnd(spec)
    clip = np.random.default_rng(0).standard_normal(samples).astype(np.float32)
    window = librosa.filters.get_window("hann", n_fft, fftbins=True)
    centred = librosa.stft(clip, n_fft=n_fft, hop_length=hop_length, window=window, center=True)
    np.testing.assert_array_equal(front_end.power_spectrogram(clip), np.abs(centred) ** 2)


def test_white_noise_spreads_energy_over_all_bands(spec: FeatureSpec) -> None:
    front_end = FrontEnd(dataclasses.replace(spec, band_pass_hz=None))
    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    band_means = front_end.from_waveform(waveform=noise, sample_rate=8000)[5:-5].mean(axis=0)
    # White noise has flat power per Hz; slaney-normalised mel bands keep that flat within a few dB.
    assert np.ptp(band_means[2:-2]) < 6


def test_gain_normalisation_makes_features_level_invariant(front_end: FrontEnd) -> None:
    speech_like = tone(frequency_hz=300, seconds=0.5, sample_rate=8000) * np.hanning(4000).astype(np.float32)
    loud = front_end.from_waveform(waveform=speech_like, sample_rate=8000)
    quiet = front_end.from_waveform(waveform=speech_like * 0.01, sample_rate=8000)
    np.testing.assert_allclose(loud, quiet, atol=1e-3)


def test_speech_is_trimmed_and_centred(front_end: FrontEnd) -> None:
    burst = tone(frequency_hz=500, seconds=0.2, sample_rate=8000)
    early = np.concatenate([np.zeros(400, np.float32), burst, np.zeros(5000, np.float32)])
    late = np.concatenate([np.zeros(5000, np.float32), burst, np.zeros(400, np.float32)])
    spec = front_end.spec
    for waveform in (early, late):
        energy = np.square(front_end.condition(waveform=waveform, sample_rate=8000))
        centroid = float((np.arange(spec.clip_samples) * energy).sum() / energy.sum())
        # Trimming works in whole frames, so the burst lands within a frame of the centre.
        assert abs(centroid - spec.clip_samples / 2) <= spec.hop_length


def test_stereo_is_downmixed_and_other_rates_resampled(front_end: FrontEnd) -> None:
    mono_8k = front_end.from_waveform(waveform=tone(frequency_hz=700, seconds=0.5, sample_rate=8000), sample_rate=8000)
    mono_44k = tone(frequency_hz=700, seconds=0.5, sample_rate=44100)
    stereo_44k = np.stack([mono_44k, mono_44k], axis=1)
    resampled = front_end.from_waveform(waveform=stereo_44k, sample_rate=44100)
    assert resampled.shape == mono_8k.shape
    peak = mono_8k.max()
    loud = mono_8k > peak - 40  # compare where there is signal, not the floor
    np.testing.assert_allclose(resampled[loud], mono_8k[loud], atol=1.0)


@pytest.mark.parametrize(
    ("format", "subtype", "tolerance_db"),
    [
        ("WAV", "PCM_16", 0.5),
        ("WAV", "PCM_24", 0.5),
        ("WAV", "FLOAT", 0.5),
        ("FLAC", "PCM_16", 0.5),
        ("OGG", "VORBIS", 3.0),
        ("MP3", "MPEG_LAYER_III", 3.0),
    ],
)
def test_every_container_decodes_to_the_same_features(
    front_end: FrontEnd, format: str, subtype: str, tolerance_db: float
) -> None:
    waveform = tone(frequency_hz=600, seconds=0.5, sample_rate=16000) * np.hanning(8000).astype(np.float32)
    reference = front_end.from_waveform(waveform=waveform, sample_rate=16000)
    data = encode(waveform, sample_rate=16000, format=format, subtype=subtype)
    features = front_end.from_bytes(data=data, max_duration_s=60)
    loud = reference > reference.max() - 30
    assert np.median(np.abs(features[loud] - reference[loud])) < tolerance_db


def test_decode_keeps_rate_and_channels() -> None:
    eight_channels = np.tile(tone(frequency_hz=440, seconds=0.1, sample_rate=48000)[:, None], (1, 8))
    waveform, sample_rate = decode(
        data=encode(eight_channels, sample_rate=48000, format="WAV", subtype="PCM_16"), max_duration_s=60
    )
    assert (waveform.shape, waveform.dtype, sample_rate) == ((4800, 8), np.float32, 48000)


def _float_wav(samples: np.ndarray) -> bytes:
    return encode(samples.astype(np.float32), sample_rate=8000, format="WAV", subtype="FLOAT")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "audio is empty"),
        (b"this is plain text, not audio at all", "could not decode audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "could not decode audio"),
        (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "could not decode audio"),
    ],
)
def test_decode_rejects_what_is_not_audio(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudioError, match=message):
        decode(data=data, max_duration_s=60)


def test_decode_rejects_a_file_with_no_samples() -> None:
    with pytest.raises(InvalidAudioError, match="no samples"):
        decode(data=_float_wav(np.zeros(0)), max_duration_s=60)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(front_end: FrontEnd, bad: float) -> None:
    samples = np.zeros(800)
    samples[100] = bad
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        front_end.from_bytes(data=_float_wav(samples), max_duration_s=60)


def test_audio_over_the_maximum_duration_is_rejected_without_reading_it_all() -> None:
    data = _float_wav(np.zeros(8000 * 3))
    with pytest.raises(AudioTooLongError, match="longer than the maximum of 2 s"):
        decode(data=data, max_duration_s=2)
    assert decode(data=data, max_duration_s=3)[0].shape == (24000, 1)


def test_a_header_claiming_an_impossible_rate_is_rejected() -> None:
    data = bytearray(_float_wav(np.zeros(100)))
    struct.pack_into("<I", data, 24, 50_000_000)  # WAV fmt chunk: sample rate field
    with pytest.raises(InvalidAudioError, match="sample rate"):
        decode(data=bytes(data), max_duration_s=60)


@pytest.mark.parametrize(
    ("waveform", "sample_rate", "message"),
    [
        (np.zeros((10, 2, 2), np.float32), 8000, "shape"),
        (np.zeros(0, np.float32), 8000, "no samples"),
        (np.zeros(100, np.float32), 0, "sample rate"),
    ],
)
def test_condition_rejects_malformed_waveforms(
    front_end: FrontEnd, waveform: np.ndarray, sample_rate: int, message: str
) -> None:
    with pytest.raises(InvalidAudioError, match=message):
        front_end.condition(waveform=waveform, sample_rate=sample_rate)


def test_mfcc_features_are_the_dct_of_the_log_mel(spec: FeatureSpec) -> None:
    mfcc_front_end = FrontEnd(dataclasses.replace(spec, feature="mfcc", n_mfcc=13))
    waveform = tone(frequency_hz=800, seconds=0.4, sample_rate=8000)
    mfcc = mfcc_front_end.from_waveform(waveform=waveform, sample_rate=8000)
    log_mel = FrontEnd(spec).from_waveform(waveform=waveform, sample_rate=8000)
    assert mfcc.shape == (spec.n_frames, 13)
    np.testing.assert_allclose(mfcc, librosa.feature.mfcc(S=log_mel.T, n_mfcc=13).T, rtol=1e-5, atol=1e-3)
