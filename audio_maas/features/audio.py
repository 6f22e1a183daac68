"""Encoded audio bytes (WAV, FLAC, OGG, MP3) -> float32 waveform, with bounds a hostile header
cannot talk past, and the errors the front end raises for audio it cannot use."""

from __future__ import annotations

import io
import math

import librosa
import numpy as np
import soundfile

__all__ = ["MAX_SAMPLE_RATE", "AudioTooLongError", "InvalidAudioError", "decode", "mono_at"]

MAX_SAMPLE_RATE = 768_000
"""Highest sample rate we accept (Hz): beyond any real converter, so a header claiming more is corrupt."""

_MAX_CHANNELS = 64


class InvalidAudioError(ValueError):
    """The input is not audio we can use: empty, undecodable, non-finite or malformed."""


class AudioTooLongError(InvalidAudioError):
    """The input decodes to more audio than the configured maximum duration."""


_LIBSNDFILE_PLAIN_WORDS = {
    "Internal error : SF_INFO struct incomplete.": "the header leaves its sample rate, channel count or format unset",
}
"""libsndfile's reasons that name its internals rather than the file's fault, in a user's words."""


def decode(*, data: bytes, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Decode one encoded audio file held in memory.

    Returns ``(waveform, sample_rate)``: float32 ``[samples, channels]`` in [-1, 1] full scale
    (float files may exceed it) and the file's rate in Hz. Never reads more than
    ``max_duration_s`` of audio, whatever the header claims. Raises :class:`InvalidAudioError`
    for anything that is not finite, non-empty audio of a sane rate and channel count.
    """
    if not data:
        raise InvalidAudioError("audio is empty (0 bytes)")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            sample_rate, channels = sound.samplerate, sound.channels
            if not 0 < sample_rate <= MAX_SAMPLE_RATE:
                raise InvalidAudioError(f"audio declares an impossible sample rate of {sample_rate} Hz")
            if not 0 < channels <= _MAX_CHANNELS:
                raise InvalidAudioError(f"audio declares an impossible {channels} channels")
            limit = math.floor(max_duration_s * sample_rate)
            # Read one frame past the limit, never the header's length: headers can lie.
            waveform = sound.read(frames=limit + 1, dtype="float32", always_2d=True)
    except InvalidAudioError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = getattr(error, "error_string", None) or str(error)  # libsndfile's words, not our buffer's repr
        reason = _LIBSNDFILE_PLAIN_WORDS.get(reason, reason)
        raise InvalidAudioError(f"could not decode audio ({len(data)} bytes): {reason}") from None
    if len(waveform) > limit:
        raise AudioTooLongError(f"audio is longer than the maximum of {max_duration_s:g} s")
    if len(waveform) == 0:
        raise InvalidAudioError("audio has no samples")
    return waveform, sample_rate


def mono_at(*, waveform: np.ndarray, sample_rate: int, rate: int, shortest: int) -> np.ndarray:
    """Any waveform, checked, downmixed and resampled to ``rate``: float32 ``[samples]``, as long
    in seconds as the input. ``waveform`` is float ``[samples]`` or ``[samples, channels]`` at
    ``sample_rate`` Hz; shorter than ``shortest`` samples at ``rate`` (a model's one analysis
    window), it is refused, as are empty and non-finite audio, with :class:`InvalidAudioError`."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=1, dtype=np.float32)
    if waveform.ndim != 1:
        raise InvalidAudioError(f"waveform must be [samples] or [samples, channels], got shape {waveform.shape}")
    if waveform.size == 0:
        raise InvalidAudioError("audio has no samples")
    if not np.isfinite(waveform).all():
        raise InvalidAudioError("audio contains NaN or infinite samples")
    if not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(f"sample rate must be in 1..{MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    if waveform.size * rate < shortest * sample_rate:
        raise InvalidAudioError(
            f"audio is {1000 * waveform.size / sample_rate:.1f} ms long; "
            f"at least {1000 * shortest / rate:.0f} ms is needed"
        )
    if sample_rate != rate:
        waveform = librosa.resample(waveform, orig_sr=sample_rate, target_sr=rate, res_type="soxr_hq")
        if waveform.size == 0:  # a handful of samples at a high rate can round to none
            waveform = np.zeros(1, dtype=np.float32)
    return waveform
