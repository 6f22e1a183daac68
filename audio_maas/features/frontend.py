"""The audio front end shared by training and serving.

Bytes in, features out, in three pure stages that training and the transformer both call:

``decode``     encoded audio bytes (WAV, FLAC, OGG, MP3) -> float32 waveform [samples, channels]
               (:mod:`audio_maas.features.audio`)
``condition``  any waveform at any rate -> float32 clip [spec.clip_samples] at ``spec.sample_rate``:
               downmix, resample, band-pass, silence trim, gain normalisation, centre pad/crop,
               pre-emphasis
``featurise``  clip -> float32 features [spec.n_frames, spec.n_bins] (log-mel dB or MFCC; or the
               clip itself, [spec.clip_samples, 1], for a model with its front end in its graph)

Every setting lives in one frozen :class:`~audio_maas.features.spec.FeatureSpec`, written next to
the model at export and read back by whoever computes features.
Training-only augmentation slots in between the stages (see ``audio_maas.training.augment``); the serving
path is exactly ``featurise(condition(decode(data)))``.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.signal
from threadpoolctl import threadpool_limits

from audio_maas.features.audio import decode, mono_at
from audio_maas.features.spec import FeatureSpec

__all__ = ["FrontEnd", "one_blas_thread"]

_SUBNORMAL_GUARD = np.float32(1e-30)
"""Added before the band-pass filter (see :meth:`FrontEnd.band_pass`)."""


class FrontEnd:
    """Conditions waveforms and computes features for one :class:`FeatureSpec`.

    Filters, the STFT window and the mel filterbank are built once here, not per clip.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._mel_basis = librosa.filters.mel(
            sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax
        )  # float32 [n_mels, 1 + n_fft // 2]
        # librosa.stft builds the window anew on every call: 26% of its time for a 1 s clip.
        self._window = librosa.filters.get_window("hann", spec.n_fft, fftbins=True)
        self._band_pass = (
            None
            if spec.band_pass_hz is None
            else scipy.signal.butter(4, spec.band_pass_hz, btype="bandpass", fs=spec.sample_rate, output="sos")
        )

    def condition(self, *, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Turn any waveform into one fixed-length clip.

        ``waveform``: float ``[samples]`` or ``[samples, channels]`` at ``sample_rate`` Hz.
        Returns float32 ``[spec.clip_samples]`` at ``spec.sample_rate`` Hz. Raises
        :class:`InvalidAudioError` for empty or non-finite input.
        """
        return self.clip_from_mono(self.to_model_rate(waveform=waveform, sample_rate=sample_rate))

    def to_model_rate(self, *, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """The first steps of :meth:`condition`: check, downmix and resample to ``spec.sample_rate``.

        Returns float32 ``[samples]``, as long in seconds as the input.
        """
        return mono_at(waveform=waveform, sample_rate=sample_rate, rate=self.spec.sample_rate, shortest=self.spec.n_fft)

    def band_pass(self, waveform: np.ndarray) -> np.ndarray:
        """``waveform`` at ``spec.sample_rate`` through the spec's band-pass filter, if it has one."""
        if self._band_pass is None:
            return waveform
        # Digital silence (exact zeros, as in padded clips) decays the filter's state into subnormal
        # numbers, which this CPU computes many times slower: 18 ms instead of 1.1 ms for a 5 s
        # ESC-10 clip with 4.5 s of zeros. A constant at -600 dBFS, which the filter's high-pass
        # removes, keeps the state normal.
        return scipy.signal.sosfilt(self._band_pass, waveform + _SUBNORMAL_GUARD).astype(np.float32)

    def clip_from_mono(self, waveform: np.ndarray) -> np.ndarray:
        """The rest of :meth:`condition`: mono float32 at ``spec.sample_rate`` (from :meth:`to_model_rate`)
        -> band-pass, silence trim, gain normalisation, centre pad/crop, pre-emphasis."""
        return self.clip_and_start(waveform)[0]

    def clip_and_start(self, waveform: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`clip_from_mono`, and the sample of ``waveform`` the clip starts at (negative when
        the clip is padded before it): what :meth:`frame_times` needs."""
        spec = self.spec
        waveform = self.band_pass(waveform)
        start = 0
        if spec.trim_top_db is not None:
            waveform, (start, _) = librosa.effects.trim(
                waveform, top_db=spec.trim_top_db, frame_length=spec.n_fft, hop_length=spec.hop_length
            )
        if spec.target_rms_dbfs is not None:
            rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
            if rms > 1e-6:  # below -120 dBFS it is silence: amplifying it would only raise the noise
                waveform = waveform * np.float32(10 ** (spec.target_rms_dbfs / 20) / rms)
        clip, centred_at = _centre(waveform, spec.clip_samples)
        if spec.pre_emphasis:
            clip = scipy.signal.lfilter([1.0, -spec.pre_emphasis], [1.0], clip).astype(np.float32)
        return clip, int(start) + centred_at

    def frame_times(self, clip_start: int) -> np.ndarray:
        """float32 ``[spec.n_frames]``: the centre of each feature frame, in seconds of the audio
        whose clip starts at sample ``clip_start`` (:meth:`clip_and_start`). Frames that fall in
        padding get times outside that audio."""
        frames = np.arange(self.spec.n_frames) * self.spec.frame_step  # librosa centres frame i on sample i * hop
        return ((clip_start + frames) / self.spec.sample_rate).astype(np.float32)

    def power_spectrogram(self, clip: np.ndarray) -> np.ndarray:
        """float32 clip ``[spec.clip_samples]`` -> power spectrogram float32 ``[1 + n_fft/2, n_frames]``,
        of frames centred on every ``hop_length``-th sample (the clip zero-padded by ``n_fft // 2``).

        The same numbers as ``librosa.stft(clip, center=True)`` (tests/test_frontend.py), with the
        padding done here: librosa's centring transforms the edge frames apart from the rest,
        three FFT calls instead of one, a quarter of the STFT's time for a 1 s clip.
        """
        padded = np.pad(clip, self.spec.n_fft // 2)
        stft = librosa.stft(
            padded, n_fft=self.spec.n_fft, hop_length=self.spec.hop_length, window=self._window, center=False
        )
        return np.abs(stft) ** 2

    def features_from_power(self, power: np.ndarray) -> np.ndarray:
        """Power spectrogram ``[1 + n_fft/2, frames]`` -> features float32 ``[frames, n_bins]``.

        Log-mel values are dB relative to full-scale power (0 dB) and clamped ``top_db`` below
        the clip's loudest bin; MFCCs are the orthonormal DCT-II of those.
        """
        log_mel = librosa.power_to_db(self._mel_basis @ power, ref=1.0, amin=1e-10, top_db=self.spec.top_db)
        if self.spec.feature == "mfcc":
            log_mel = librosa.feature.mfcc(S=log_mel, n_mfcc=self.spec.n_mfcc)
        return np.ascontiguousarray(log_mel.T, dtype=np.float32)

    def featurise(self, clip: np.ndarray) -> np.ndarray:
        """float32 clip ``[spec.clip_samples]`` -> features float32 ``[spec.n_frames, spec.n_bins]``."""
        if self.spec.feature == "waveform":
            return clip[:, np.newaxis]
        return self.features_from_power(self.power_spectrogram(clip))

    def from_waveform(self, *, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Any waveform -> features float32 ``[spec.n_frames, spec.n_bins]``."""
        return self.featurise(self.condition(waveform=waveform, sample_rate=sample_rate))

    def features_and_frame_times(self, *, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`from_waveform`'s features, and :meth:`frame_times` in seconds of ``waveform``."""
        clip, start = self.clip_and_start(self.to_model_rate(waveform=waveform, sample_rate=sample_rate))
        return self.featurise(clip), self.frame_times(start)

    def from_bytes(self, *, data: bytes, max_duration_s: float) -> np.ndarray:
        """Encoded audio file -> features float32 ``[spec.n_frames, spec.n_bins]``: the serving path."""
        waveform, sample_rate = decode(data=data, max_duration_s=max_duration_s)
        return self.from_waveform(waveform=waveform, sample_rate=sample_rate)


def one_blas_thread() -> None:
    """Limit this process to one BLAS thread, for good: where front ends run, one per core.

    The mel filterbank's matrix product is the front end's only BLAS call, and OpenBLAS's own
    threads spin after it, burning the core the next clip, the predictor or another worker needs:
    a 5 s ESC-10 clip cost 25 ms of CPU for 13 ms of work with two threads, 12 ms with one.
    """
    threadpool_limits(limits=1, user_api="blas")


def _centre(waveform: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """Centre ``waveform`` in ``length`` samples: zero-pad both sides or crop both ends evenly.
    Also returns the sample of ``waveform`` the result starts at (negative when padded)."""
    excess = waveform.size - length
    if excess >= 0:
        start = excess // 2
        return np.ascontiguousarray(waveform[start : start + length], dtype=np.float32), start
    before = -excess // 2
    return np.pad(waveform, (before, -excess - before)).astype(np.float32), -before
