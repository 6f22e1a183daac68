"""Transformer settings: environment variables ``AUDIO_MAAS_TRANSFORMER_*``, mirrored by CLI flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from audio_maas.serving.settings import ServerSettings

__all__ = ["TransformerSettings"]


class TransformerSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIO_MAAS_TRANSFORMER_", frozen=True, use_attribute_docstrings=True)

    max_duration_s: float = Field(default=30.0, gt=0, le=3600)
    """Longest audio accepted per element (s); longer is answered 400 before it is featurised."""
    max_batch_elements: int = Field(default=64, ge=1)
    """Most audio elements in one request."""
    sequence_max_held_s: float = Field(default=30.0, ge=10, le=3600)
    """Most seconds of one recording (a sequence of a live stream) the server may hold: the 5 s of
    context it keeps, a sound still going on, and the piece that just arrived. A piece that would
    take it over is refused with RESOURCE_EXHAUSTED and ends its sequence; the stream goes on."""
    stream_max_sequences: int = Field(default=16, ge=1, le=1024)
    """Sequences one live stream may hold open at once (a gateway carrying several callers on one
    stream, as Triton's clients do); one more is refused with RESOURCE_EXHAUSTED. A stream holds
    at most this many times ``sequence_max_held_s`` of audio."""
    stream_idle_s: float = Field(default=30.0, gt=0, le=3600)
    """A live stream that sends nothing for this long ends with DEADLINE_EXCEEDED, and its audio is freed."""
    feature_threads: int = Field(default=1, ge=1)
    """Threads that decode and featurise requests over ``inline_features_max_bytes``, off the event
    loop. The front end holds the GIL for most of its work, so more threads mostly contend: on 2
    cores, 1 thread served 15% more clips/s than 2."""
    inline_features_max_bytes: int = Field(default=32 * 1024, ge=0)
    """Requests whose audio is at most this many bytes are decoded and featurised on the event loop
    itself; larger ones go to the feature threads, so that a long recording holds up no one else's
    I/O. The GIL runs one thread at a time anyway, and handing a short clip to a thread costs more
    than its features: one FSDD clip per request used 42-48% less CPU inline. 32 KiB is 1 s of 16
    kHz WAV (about 1 ms of work), but a low-bitrate Ogg of that size can hold several seconds of
    44.1 kHz audio (5 s of ESC-10 is 13 KiB and about 12 ms of work). 0 sends every request to the
    threads."""
