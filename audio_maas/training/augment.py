"""Training-only augmentation that widens the voices, rooms and microphones the model hears.

FSDD is six men on a few microphones; users are women, children and other accents. Each
augmented copy of an utterance goes through the shared front end with perturbations slotted
between its stages, so that apart from the perturbations it is exactly what serving computes:

before ``condition``   speed perturbation (tempo, pitch and formants together) and pitch shift
after ``condition``    background noise at a random SNR, random gain, random time shift
on the spectrogram     vocal-tract-length perturbation (VTLP): a warp of the frequency axis
                       (not for waveform features: the model's own front end makes its spectrogram)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import librosa
import numpy as np

from audio_maas.features.audio import decode
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.training.dataset import LONGEST_RECORDING_S
from audio_maas.training.featurise import map_chunks

__all__ = [
    "AugmentSettings",
    "Augmenter",
    "augmented_features",
    "make_noise_bank",
    "mix_at_snr",
    "sound_augment_settings",
    "vtlp",
]


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges each perturbation is drawn from, uniformly; every copy gets all of them. The
    defaults are for spoken digits: they reach toward voices FSDD lacks."""

    speed: tuple[float, float] = (0.85, 1.2)
    """Playback speed factor (1.2 is 20% faster and higher)."""
    pitch_semitones: tuple[float, float] = (-3.0, 8.0)
    """Pitch shift at constant tempo; skewed upward toward women's and children's voices."""
    vtlp_alpha: tuple[float, float] = (0.85, 1.2)
    """Frequency warp factor; > 1 mimics a shorter vocal tract (higher formants)."""
    snr_db: tuple[float, float] = (0.0, 30.0)
    """Signal-to-noise ratio of the mixed-in background noise."""
    noise_probability: float = 0.8
    """Share of copies that get background noise at all."""
    gain_db: tuple[float, float] = (-20.0, 6.0)
    """Gain applied after the front end's normalisation: quiet and hot recordings."""
    shift_s: float = 0.15
    """Largest time shift either way of the centred speech (s)."""


def sound_augment_settings(clip_s: float) -> AugmentSettings:
    """Milder ranges for sounds other than FSDD's voices: small pitch and frequency warps keep a
    class's timbre, quieter noise keeps faint sounds audible, and shifts of up to a fifth of the
    clip move the event within it."""
    return AugmentSettings(
        speed=(0.9, 1.1),
        pitch_semitones=(-2.0, 2.0),
        vtlp_alpha=(0.9, 1.1),
        snr_db=(10.0, 40.0),
        noise_probability=0.5,
        gain_db=(-12.0, 6.0),
        shift_s=0.2 * clip_s,
    )


class Augmenter:
    """Makes augmented features of one utterance, reproducibly from a numpy Generator."""

    def __init__(self, front_end: FrontEnd, settings: AugmentSettings, noise_bank: Sequence[np.ndarray]) -> None:
        """``noise_bank``: float32 clips ``[front_end.spec.clip_samples]`` of background sound."""
        self.front_end = front_end
        self.settings = settings
        self.noise_bank = list(noise_bank)

    def features(self, *, data: bytes, rng: np.random.Generator) -> np.ndarray:
        """Encoded audio -> augmented features float32 ``[spec.n_frames, spec.n_bins]``."""
        s, spec = self.settings, self.front_end.spec
        waveform, sample_rate = decode(data=data, max_duration_s=LONGEST_RECORDING_S)
        waveform = waveform.mean(axis=1)
        # Speed perturbation: play the samples back at another rate, as Kaldi's speed perturbation.
        waveform = librosa.resample(
            waveform, orig_sr=sample_rate * rng.uniform(*s.speed), target_sr=sample_rate, res_type="soxr_hq"
        )
        semitones = rng.uniform(*s.pitch_semitones)
        if waveform.size > spec.n_fft:
            waveform = librosa.effects.pitch_shift(
                waveform, sr=sample_rate, n_steps=semitones, n_fft=spec.n_fft, hop_length=spec.n_fft // 4
            )
        clip = self.front_end.condition(waveform=waveform, sample_rate=sample_rate)
        if self.noise_bank and rng.random() < s.noise_probability:
            noise = self.noise_bank[rng.integers(len(self.noise_bank))]
            clip = mix_at_snr(signal=clip, noise=noise, snr_db=rng.uniform(*s.snr_db))
        clip = clip * np.float32(10 ** (rng.uniform(*s.gain_db) / 20))
        shift = round(rng.uniform(-s.shift_s, s.shift_s) * spec.sample_rate)
        clip = np.roll(clip, shift)
        if spec.feature == "waveform":
            return self.front_end.featurise(clip)
        power = vtlp(self.front_end.power_spectrogram(clip), alpha=rng.uniform(*s.vtlp_alpha))
        return self.front_end.features_from_power(power)


def mix_at_snr(*, signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` scaled so that signal power / noise power is ``snr_db`` dB.

    Both float32 ``[samples]`` of the same length; silent signal or noise returns the signal.
    """
    signal_power = float(np.mean(np.square(signal, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if signal_power == 0 or noise_power == 0:
        return signal
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (signal + scale * noise).astype(np.float32)


def vtlp(power: np.ndarray, *, alpha: float, boundary: float = 0.8) -> np.ndarray:
    """Vocal-tract-length perturbation (Jaitly & Hinton, 2013) of a spectrogram.

    ``power``: float ``[freq_bins, frames]`` from 0 Hz to Nyquist. Frequencies below
    ``boundary`` x Nyquist are scaled by ``alpha``; above, a straight line joins that point to
    Nyquist, so the band edges stay put. Returns the warped spectrogram, same shape and dtype.
    """
    n_bins = power.shape[0]
    target = np.arange(n_bins, dtype=np.float64)  # output bin positions
    knee = boundary * (n_bins - 1) * min(alpha, 1.0)  # output position where the linear part ends
    nyquist = n_bins - 1
    # The source bin each output bin reads from: the inverse of the warp.
    source = np.where(
        target <= knee, target / alpha, knee / alpha + (target - knee) * (nyquist - knee / alpha) / (nyquist - knee)
    )
    low = np.clip(np.floor(source).astype(int), 0, nyquist - 1)
    weight = (source - low)[:, None]
    return ((1 - weight) * power[low] + weight * power[low + 1]).astype(power.dtype)


def make_noise_bank(
    *, front_end: FrontEnd, speech: Sequence[bytes], rng: np.random.Generator, per_kind: int = 8
) -> list[np.ndarray]:
    """Background sounds of one clip each, float32 ``[spec.clip_samples]`` at unit RMS.

    No noise corpus ships with FSDD, so we make the kinds a phone meets: white, pink (1/f) and
    brown (1/f^2) noise, mains hum with harmonics, and babble (several training utterances at
    once). ``speech``: encoded training utterances to build babble from.
    """
    spec = front_end.spec
    n = spec.clip_samples
    freqs = np.fft.rfftfreq(n, d=1 / spec.sample_rate)
    bank = []
    for _ in range(per_kind):
        white = rng.standard_normal(n)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 20.0)), n)
        brown = np.fft.irfft(spectrum / np.maximum(freqs, 20.0), n)
        t = np.arange(n) / spec.sample_rate
        mains = rng.choice([50.0, 60.0])
        hum = sum(np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        talkers = rng.choice(len(speech), size=min(5, len(speech)), replace=False)
        babble = sum(_clip(front_end, speech[i]) for i in talkers)
        bank.extend([white, pink, brown, hum, babble])
    return [(clip / max(float(np.sqrt(np.mean(np.square(clip)))), 1e-9)).astype(np.float32) for clip in bank]


def _clip(front_end: FrontEnd, data: bytes) -> np.ndarray:
    """Encoded audio -> conditioned clip float32 ``[spec.clip_samples]``."""
    waveform, sample_rate = decode(data=data, max_duration_s=LONGEST_RECORDING_S)
    return front_end.condition(waveform=waveform, sample_rate=sample_rate)


def augmented_features(
    clips: Sequence[bytes],
    *,
    spec: FeatureSpec,
    settings: AugmentSettings,
    copies: int,
    noise_speech: Sequence[bytes],
    seed: int,
    workers: int,
    ids: Sequence[int] | None = None,
) -> np.ndarray:
    """``copies`` augmented feature arrays of each encoded clip, float32 ``[len(clips) * copies, frames, bins]``.

    Copy ``c`` of clip ``i`` sits at row ``i * copies + c`` and is drawn from a generator seeded
    with ``(seed, ids[i], c)`` (``ids`` the positions by default), so the result does not depend
    on ``workers``.
    """
    if copies == 0 or not clips:
        return np.empty((0, *spec.feature_shape), dtype=np.float32)
    jobs = list(zip(range(len(clips)) if ids is None else ids, clips, strict=True))
    parts = map_chunks(_augment_chunk, jobs, spec, settings, copies, list(noise_speech), seed, workers=workers)
    return np.concatenate(parts)


def _augment_chunk(
    jobs: list[tuple[int, bytes]],
    spec: FeatureSpec,
    settings: AugmentSettings,
    copies: int,
    noise_speech: list[bytes],
    seed: int,
) -> np.ndarray:
    front_end = FrontEnd(spec)
    bank = make_noise_bank(front_end=front_end, speech=noise_speech, rng=np.random.default_rng(seed))
    augmenter = Augmenter(front_end, settings, bank)
    return np.stack(
        [
            augmenter.features(data=data, rng=np.random.default_rng((seed, position, copy)))
            for position, data in jobs
            for copy in range(copies)
        ]
    )
