"""Training configuration, importable without TensorFlow (the CLI builds its flags from it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from audio_maas.features.spec import FeatureSpec
from audio_maas.training.augment import AugmentSettings

__all__ = ["ENCODERS", "Arch", "TrainConfig", "recorded_cnn_filters"]

Arch = Literal["cnn", "lstm"]

ENCODERS = {"whisper-tiny.en": "transcribe"}
"""Pretrained encoder a head may train on -> the pinned archive it comes from (the model of
``audio_maas.pretrained.archives.ARCHIVES`` whose weights hold it)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run produces."""

    arch: Arch = "cnn"
    cnn_filters: tuple[int, ...] = (32, 64, 128, 128)
    """Filters of the CNN's conv stages (each conv, batch norm, ReLU, 2x2 max pool); the LSTM ignores it."""
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    augment_copies: int = 3
    """Augmented copies of each training utterance, besides the clean one."""
    synthetic_takes: int = 1
    """espeak-ng utterances per digit, accent and training voice variant; 0 leaves them out."""
    unknown_bias: float = 0.0
    """Added to the ``unknown`` class's logit once trained, before export: every answer's odds of
    ``unknown`` against each other class scale by ``exp(unknown_bias)``. Below 0, the model says
    ``unknown`` only when surer, and loses fewer recordings of its named classes to it; 0 leaves
    the trained model as it is."""
    encoder: str | None = None
    """A pretrained encoder (``ENCODERS``) to train a head on, frozen,
    instead of ``arch`` from scratch; its features are then the conditioned clip itself."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    augment: AugmentSettings = field(default_factory=AugmentSettings)


def recorded_cnn_filters(config: dict[str, Any]) -> tuple[int, ...]:
    """The CNN filters a ``training.json`` config records; models trained before they were a
    setting used the default."""
    return tuple(config.get("cnn_filters", TrainConfig.cnn_filters))
