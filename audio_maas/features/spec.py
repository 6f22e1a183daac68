"""What a model's front end computes: every setting, written next to the model at export and
read back by whoever computes its features, so a model is always served the features it learned."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audio_maas.protocol.model_dir import FEATURE_SPEC_FILE

__all__ = ["FeatureSpec"]


@dataclass(frozen=True)
class FeatureSpec:
    """Every setting of the front end; what a model was trained on and must be served with."""

    sample_rate: int = 8000
    """Rate (Hz) every input is resampled to before features are computed."""
    clip_s: float = 1.0
    """Length (s) of the fixed window the trimmed speech is centred in, padded or cropped."""
    n_fft: int = 256
    """FFT size and window length (samples at ``sample_rate``): 32 ms at 8 kHz."""
    hop_length: int = 80
    """Frame step (samples): 10 ms at 8 kHz."""
    n_mels: int = 40
    """Number of mel bands."""
    fmin: float = 20.0
    """Lowest mel band edge (Hz)."""
    fmax: float = 4000.0
    """Highest mel band edge (Hz); at most ``sample_rate / 2``."""
    feature: Literal["log_mel", "mfcc", "waveform"] = "log_mel"
    """Which features the model reads: log-mel power in dB, MFCCs of it, or the conditioned clip
    itself (a model with its own front end in its graph, such as a pretrained encoder's): one
    frame per sample, of one value. The STFT settings then frame the silence trim alone."""
    n_mfcc: int = 20
    """Number of cepstral coefficients when ``feature == "mfcc"``."""
    top_db: float = 80.0
    """Dynamic range (dB) kept below the loudest mel bin of a clip; quieter bins are clamped."""
    band_pass_hz: tuple[float, float] | None = (60.0, 3800.0)
    """Band-pass edges (Hz) of a 4th-order Butterworth filter, or None for no filter."""
    pre_emphasis: float = 0.0
    """First-order pre-emphasis coefficient (0 disables; 0.97 is the classic value)."""
    trim_top_db: float | None = 30.0
    """Trim leading and trailing audio quieter than this many dB below the peak; None keeps all."""
    target_rms_dbfs: float | None = -20.0
    """Scale the trimmed speech to this RMS level (dB full scale); None leaves the gain alone."""

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive, got {self.sample_rate}")
        if self.clip_s <= 0:
            problems.append(f"clip_s must be positive, got {self.clip_s}")
        if self.hop_length <= 0 or self.n_fft <= 0:
            problems.append(f"n_fft and hop_length must be positive, got {self.n_fft}, {self.hop_length}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")
        if self.feature not in ("log_mel", "mfcc", "waveform"):
            problems.append(f"feature must be 'log_mel', 'mfcc' or 'waveform', got {self.feature!r}")
        if self.feature == "mfcc" and not 0 < self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc must be in 1..n_mels, got {self.n_mfcc}")
        if self.band_pass_hz is not None:
            low, high = self.band_pass_hz
            if not 0 < low < high < self.sample_rate / 2:
                problems.append(f"band_pass_hz must satisfy 0 < low < high < sample_rate/2, got {self.band_pass_hz}")
        if not 0 <= self.pre_emphasis < 1:
            problems.append(f"pre_emphasis must be in [0, 1), got {self.pre_emphasis}")
        if problems:
            raise ValueError("invalid FeatureSpec: " + "; ".join(problems))

    @property
    def clip_samples(self) -> int:
        """Samples in one conditioned clip."""
        return round(self.clip_s * self.sample_rate)

    @property
    def frame_step(self) -> int:
        """Samples from one feature frame to the next."""
        return 1 if self.feature == "waveform" else self.hop_length

    @property
    def n_frames(self) -> int:
        """Feature frames per clip (centred STFT frames, or samples)."""
        return self.clip_samples if self.feature == "waveform" else 1 + self.clip_samples // self.hop_length

    @property
    def n_bins(self) -> int:
        """Feature values per frame."""
        return {"mfcc": self.n_mfcc, "waveform": 1}.get(self.feature, self.n_mels)

    @property
    def feature_shape(self) -> tuple[int, int]:
        """Shape of one clip's features: (frames, bins)."""
        return (self.n_frames, self.n_bins)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown FeatureSpec fields: {', '.join(unknown)}")
        if fields.get("band_pass_hz") is not None:
            fields["band_pass_hz"] = tuple(fields["band_pass_hz"])
        return cls(**fields)

    def write(self, model_dir: Path) -> None:
        (model_dir / FEATURE_SPEC_FILE).write_text(self.to_json())

    @classmethod
    def read(cls, model_dir: Path) -> FeatureSpec:
        path = model_dir / FEATURE_SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a model directory must carry its feature spec")
        return cls.from_json(path.read_text())
