"""The interface of a model we did not train (``interface.json`` beside its SavedModel): how
audio becomes its input windows, and how its outputs are put back on one time axis.

Input, ``kind``:

- ``waveform``: mono audio at ``sample_rate``, ``pad_start`` and ``pad_end`` zeros around it, cut
  into windows of ``window`` samples every ``hop``, each ``normalise``d (``none``, or
  ``standardise``: zero mean, unit deviation), shaped ``shape``;
- ``log_mel``: the log-mel recipe of musicnn (librosa's mel power spectrogram at ``sample_rate``,
  ``n_fft``, ``hop_length``, ``n_mels``, then ``log10(10000 x + 1)``), cut into patches of
  ``window`` frames every ``hop``; audio shorter than one patch is padded with silence. musicnn
  rounds the power to float16 first and computes in float16, where 10000 x overflows to infinity
  above x = 6.55 (a loud tone); here it stays float32, within 5e-4 of musicnn's where it is finite.

Output, ``kind``: ``frames`` (each window answers ``frames_per_window`` frames of each output in
``names``; ``trim_frames`` at each end of a window overlap the next and are dropped; a frame
lasts ``frame_s``, the first starting ``first_frame_s`` into its window) or ``tags`` (one row of
independent scores per window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np

from audio_maas.features.audio import mono_at
from audio_maas.protocol.contract import INTERFACE_FILE

__all__ = ["ModelInterface", "Windows"]


@dataclass(frozen=True)
class Windows:
    """One recording cut for the model: its input rows, and where each row starts."""

    rows: np.ndarray
    """float32 ``[n, *shape]``."""
    start_s: np.ndarray
    """float64 ``[n]``: each window's start, in seconds of the recording (negative in padding)."""
    duration_s: float
    """The recording's length."""


@dataclass(frozen=True)
class ModelInterface:
    """A model directory's ``interface.json``: its ``input`` and ``output`` as the module says."""

    input: dict[str, Any]
    output: dict[str, Any]

    @classmethod
    def read(cls, model_dir: Path) -> ModelInterface:
        fields = json.loads((model_dir / INTERFACE_FILE).read_text())
        interface = cls(input=fields["input"], output=fields["output"])
        if interface.input["kind"] not in ("waveform", "log_mel") or interface.output["kind"] not in ("frames", "tags"):
            raise ValueError(f"{model_dir / INTERFACE_FILE}: unknown kind of input or output")
        return interface

    def windows(self, *, waveform: np.ndarray, sample_rate: int) -> Windows:
        """Any waveform (float ``[samples]`` or ``[samples, channels]`` at ``sample_rate``) cut
        into the model's input rows."""
        spec = self.input
        rate = spec["sample_rate"]
        if spec["kind"] == "log_mel":
            mono = mono_at(waveform=waveform, sample_rate=sample_rate, rate=rate, shortest=spec["n_fft"])
            shortest = (spec["window"] - 1) * spec["hop_length"]  # one patch of centred frames
            padded = np.pad(mono, (0, max(0, shortest - mono.size)))
            power = librosa.feature.melspectrogram(
                y=padded, sr=rate, n_fft=spec["n_fft"], hop_length=spec["hop_length"], n_mels=spec["n_mels"]
            ).T
            frames = np.log10(10000 * power + 1).astype(np.float32)
            rows = np.lib.stride_tricks.sliding_window_view(frames, spec["window"], axis=0)[:: spec["hop"]]
            rows = np.ascontiguousarray(rows.transpose(0, 2, 1))  # [n, window frames, mels]
            starts = np.arange(len(rows)) * spec["hop"] * spec["hop_length"] / rate
            return Windows(rows, starts, mono.size / rate)
        mono = mono_at(waveform=waveform, sample_rate=sample_rate, rate=rate, shortest=1)
        padded = np.pad(mono, (spec["pad_start"], spec["pad_end"]))
        rows = np.lib.stride_tricks.sliding_window_view(padded, spec["window"])[:: spec["hop"]].astype(np.float32)
        if spec["normalise"] == "standardise":
            rows = rows - rows.mean(axis=1, keepdims=True)
            rows /= np.maximum(rows.std(axis=1, keepdims=True), 1e-8)
        starts = (np.arange(len(rows)) * spec["hop"] - spec["pad_start"]) / rate
        return Windows(np.ascontiguousarray(rows).reshape(len(rows), *spec["shape"]), starts, mono.size / rate)

    def frames(self, windows: Windows, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One ``frames`` output's values ``[n, frames_per_window, bins]`` (or ``[n, bins]`` with
        one frame a window) for ``windows``, on one time axis: ``(values [frames, bins], time_s
        [frames])``, the frames within the recording and each one's time as the model places it
        (``first_frame_s`` says where in its window)."""
        out = self.output
        trim = out["trim_frames"]
        values = values.reshape(len(values), out["frames_per_window"], -1)  # CREPE's one frame has no axis
        kept = values[:, trim : values.shape[1] - trim]
        offsets = out["first_frame_s"] + (trim + np.arange(kept.shape[1])) * out["frame_s"]
        times = (windows.start_s[:, None] + offsets[None, :]).reshape(-1)
        flat = kept.reshape(-1, kept.shape[2])
        inside = (times >= -1e-9) & (times < windows.duration_s)
        return flat[inside], times[inside]
