"""Transformer settings: environment variables ``AUDIO_MAAS_TRANSFORMER_*``, mirrored by CLI flags."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from serving.settings import ServerSettings

__all__ = ["TransformerSettings"]


class TransformerSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIO_MAAS_TRANSFORMER_", frozen=True, use_attribute_docstrings=True)

    max_duration_s: float = Field(default=30.0, gt=0, le=3600)
    """Longest audio accepted per element (s); longer is answered 400 before it is featurised."""
    max_batch_elements: int = Field(default=64, ge=1)
    """Most audio elements in one request."""
    feature_threads: int = Field(default=1, ge=1)
    """Threads that decode and featurise, off the event loop. The front end holds the GIL for most
    of its work, so more threads mostly contend: on 2 cores, 1 thread served 15% more clips/s than 2."""
