"""Training-only augmentation: each perturbation does what it claims, reproducibly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.training.augment import (
    Augmenter,
    AugmentSettings,
    augmented_features,
    make_noise_bank,
    mix_at_snr,
    vtlp,
)
from audio_maas.training.dataset import load_fsdd
from tests.conftest import encode, tone


@pytest.fixture(scope="module")
def speech(fsdd_dir: Path) -> list[bytes]:
    return [u.data for u in load_fsdd(fsdd_dir)[:40]]


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_is_mixed_at_the_requested_snr(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    signal = tone(frequency_hz=300, seconds=1, sample_rate=8000)
    noise = rng.standard_normal(8000).astype(np.float32)
    mixed = mix_at_snr(signal=signal, noise=noise, snr_db=snr_db)
    measured = 10 * np.log10(np.mean(signal**2) / np.mean((mixed - signal) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.01)


def test_mixing_into_silence_adds_nothing() -> None:
    silence = np.zeros(100, np.float32)
    assert not mix_at_snr(signal=silence, noise=np.ones(100, np.float32), snr_db=0).any()


def test_vtlp_moves_a_spectral_peak_by_alpha_and_keeps_the_edges() -> None:
    power = np.zeros((129, 3), np.float32)
    power[40] = 1.0
    warped = vtlp(power, alpha=1.1)
    assert warped.shape == power.shape and warped.dtype == power.dtype
    assert int(warped[:, 0].argmax()) == 44  # 40 * 1.1
    assert int(vtlp(power, alpha=0.9)[:, 0].argmax()) == 36
    np.testing.assert_array_equal(vtlp(power, alpha=1.0), power)


def test_noise_bank_holds_each_kind_at_unit_rms(front_end: FrontEnd, speech: list[bytes]) -> None:
    bank = make_noise_bank(front_end=front_end, speech=speech, rng=np.random.default_rng(0), per_kind=2)
    assert len(bank) == 10
    for clip in bank:
        assert clip.shape == (front_end.spec.clip_samples,)
        assert np.sqrt(np.mean(clip**2)) == pytest.approx(1.0, rel=1e-3)


def test_augmented_features_are_finite_varied_and_reproducible(front_end: FrontEnd, speech: list[bytes]) -> None:
    augmenter = Augmenter(
        front_end, AugmentSettings(), make_noise_bank(front_end=front_end, speech=speech, rng=np.random.default_rng(0))
    )
    first = augmenter.features(data=speech[0], rng=np.random.default_rng(7))
    again = augmenter.features(data=speech[0], rng=np.random.default_rng(7))
    other = augmenter.features(data=speech[0], rng=np.random.default_rng(8))
    clean = front_end.from_bytes(data=speech[0], max_duration_s=60)
    assert first.shape == clean.shape and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1 and np.abs(first - clean).mean() > 1


def test_speed_perturbation_changes_the_duration_of_speech(front_end: FrontEnd) -> None:
    """With every other perturbation off, speed 1.25 shortens a 0.5 s burst to 0.4 s."""
    settings = AugmentSettings(
        speed=(1.25, 1.25), pitch_semitones=(0, 0), vtlp_alpha=(1, 1), noise_probability=0, gain_db=(0, 0), shift_s=0
    )
    spec = dataclasses.replace(front_end.spec, trim_top_db=None, band_pass_hz=None, target_rms_dbfs=None)
    augmenter = Augmenter(FrontEnd(spec), settings, [])
    burst = np.concatenate([np.zeros(1000), tone(frequency_hz=400, seconds=0.5, sample_rate=8000), np.zeros(1000)])
    features = augmenter.features(data=encode(burst, sample_rate=8000, format="WAV"), rng=np.random.default_rng(0))
    loud_frames = int((features.max(axis=1) > features.max() - 20).sum())
    assert loud_frames == pytest.approx(40, abs=3)  # 0.4 s at a 10 ms hop


def test_augmented_features_do_not_depend_on_the_number_of_workers(spec: FeatureSpec, speech: list[bytes]) -> None:
    kwargs = dict(spec=spec, settings=AugmentSettings(), copies=2, noise_speech=speech[:10], seed=3)
    one = augmented_features(speech[:6], workers=1, **kwargs)
    two = augmented_features(speech[:6], workers=2, **kwargs)
    assert one.shape == (12, *spec.feature_shape)
    np.testing.assert_array_equal(one, two)
