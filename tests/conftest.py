"""Shared fixtures: the real FSDD recordings and synthetic test signals."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from transformer.frontend import FeatureSpec, FrontEnd

REPO = Path(__file__).resolve().parent.parent
FSDD_DIR = Path(os.environ.get("AUDIO_MAAS_DATA_DIR", REPO.parent / "shared" / "data" / "fsdd"))
BUNDLED_MODEL = REPO / "models" / "digits-cnn"


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    if not (FSDD_DIR / "recordings").is_dir():
        pytest.fail(f"FSDD not found at {FSDD_DIR}; set AUDIO_MAAS_DATA_DIR")
    return FSDD_DIR


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return FeatureSpec()


@pytest.fixture(scope="session")
def front_end(spec: FeatureSpec) -> FrontEnd:
    return FrontEnd(spec)


def tone(*, frequency_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A sine: float32 [samples] at ``sample_rate`` Hz."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def encode(waveform: np.ndarray, *, sample_rate: int, format: str, subtype: str | None = None) -> bytes:
    """Encode float [samples] or [samples, channels] as an audio file in memory."""
    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, sample_rate, format=format, subtype=subtype)
    return buffer.getvalue()
