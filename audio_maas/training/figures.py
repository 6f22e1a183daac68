"""The explanation figure: what a person needs to see why the model answered what it did."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import librosa
import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["draw_explanation"]


def draw_explanation(
    *,
    waveform: np.ndarray,
    sample_rate: int,
    probabilities: np.ndarray,
    saliency: np.ndarray,
    frame_s: np.ndarray,
    class_names: Sequence[str],
    title: str,
    out: Path,
) -> None:
    """Three panels on one time axis, in seconds of the audio: the waveform with the evidence per
    frame over it, its log-mel spectrogram, and the saliency on the model's own grid (frames x
    mel bins; red is evidence for the predicted class, blue against). ``waveform`` mono; the rest as
    :class:`audio_maas.client.v2.Explanation` holds them."""
    seconds = len(waveform) / sample_rate
    hop_s = float(np.diff(frame_s[:2])[0]) if len(frame_s) > 1 else 0.01
    left, right = min(0.0, float(frame_s[0]) - hop_s / 2), max(seconds, float(frame_s[-1]) + hop_s / 2)
    top = np.argsort(probabilities)[::-1][:3]
    summary = ", ".join(f"{class_names[i]} {probabilities[i]:.2f}" for i in top)

    figure, (wave_axes, mel_axes, saliency_axes) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    figure.suptitle(f"{title}\npredicted: {class_names[top[0]]}   (top 3: {summary})")
    wave_axes.plot(np.arange(len(waveform)) / sample_rate, waveform, color="0.4", linewidth=0.5)
    wave_axes.set_ylabel("waveform")
    evidence = np.clip(saliency.sum(axis=1), 0, None)
    evidence_axes = wave_axes.twinx()
    evidence_axes.fill_between(frame_s, evidence / (evidence.max() or 1), color="tab:red", alpha=0.35, step="mid")
    evidence_axes.set_ylim(0, 1.05)
    evidence_axes.set_ylabel("evidence per frame", color="tab:red")

    n_mels = saliency.shape[1]
    n_fft = 1 << max(4, math.ceil(math.log2(0.032 * sample_rate)))  # about 32 ms, at any rate
    mel = librosa.feature.melspectrogram(
        y=waveform, sr=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels, fmax=sample_rate / 2
    )
    mel_axes.imshow(
        librosa.power_to_db(mel, ref=np.max, top_db=80),
        origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, n_mels),
    )  # fmt: skip
    mel_axes.set_ylabel("log-mel of the audio\n(mel bands)")

    limit = float(np.abs(saliency).max()) or 1.0
    saliency_axes.imshow(
        saliency.T, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
        extent=(float(frame_s[0]) - hop_s / 2, float(frame_s[-1]) + hop_s / 2, 0, n_mels),
    )  # fmt: skip
    saliency_axes.set_ylabel("saliency on the model's\nfeatures (mel bins)")
    saliency_axes.set_xlabel("seconds of the audio (grey: padding the model saw, not audio)")
    for axes in (wave_axes, mel_axes, saliency_axes):
        axes.set_xlim(left, right)
        for start, end in ((left, 0.0), (seconds, right)):
            if end > start:
                axes.axvspan(start, end, color="0.85", zorder=0)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
