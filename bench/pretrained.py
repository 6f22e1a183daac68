"""What each pretrained model costs in one process, per second of audio: the windows (decode
excluded: resample, framing, log-mel) and the model on them in calls of at most 32 rows, as the
predictor makes them (``max_batch_size``), on one TensorFlow thread; and peak resident memory
with the three loaded. A baseline for the figures
through the service, which need the transformer's side of issue 30.

    .venv/bin/python bench/pretrained.py [--models DIR] [--seconds 30] [--repeats 5]

``--models`` holds the converted models (``make import-pretrained``: build/pretrained). The audio
is 30 s of 44.1 kHz stereo: a C-major arpeggio of piano-like tones over pink noise at -30 dB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.features.interface import ModelInterface  # noqa: E402
from audio_maas.savedmodel.load import load_serving_function  # noqa: E402

RATE = 44100
BATCH = 32
"""The predictor's default ``max_batch_size``: rows per model call."""


def arpeggio(seconds: float) -> np.ndarray:
    """float32 [samples, 2]: C4 E4 G4 C5, 0.5 s each with decaying harmonics, over pink-ish noise."""
    t = np.arange(int(RATE * 0.5)) / RATE
    notes = [261.63, 329.63, 392.0, 523.25]
    bar = np.concatenate([
        sum(0.3 / k * np.sin(2 * np.pi * k * f * t) for k in (1, 2, 3)) * np.exp(-3 * t) for f in notes
    ])  # fmt: skip
    mono = np.resize(bar, int(RATE * seconds))
    noise = np.cumsum(np.random.default_rng(0).standard_normal(mono.size)) * 1e-4
    mono = (mono + 0.03 * (noise - noise.mean()) / (noise.std() + 1e-9)).astype(np.float32)
    return np.stack([mono, mono], axis=1)


def run_in_calls(serve: Any, rows: np.ndarray) -> None:
    """``rows`` through ``serve`` in calls of at most ``BATCH`` rows."""
    import tensorflow as tf

    for start in range(0, len(rows), BATCH):
        serve(features=tf.constant(rows[start : start + BATCH]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=REPO / "build" / "pretrained")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    audio = arpeggio(args.seconds)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {}
    for name in ("notes", "pitch", "music-tags"):
        interface = ModelInterface.read(args.models / name)
        serve = load_serving_function(args.models / name)
        windows = interface.windows(waveform=audio, sample_rate=RATE)
        run_in_calls(serve, windows.rows)  # trace once
        window_s, model_s = [], []
        for _ in range(args.repeats):
            started = time.process_time()
            windows = interface.windows(waveform=audio, sample_rate=RATE)
            cut = time.process_time()
            run_in_calls(serve, windows.rows)
            window_s.append(cut - started)
            model_s.append(time.process_time() - cut)
        figures[name] = {
            "windows": len(windows.rows),
            "windows_cpu_ms_per_audio_s": 1000 * statistics.median(window_s) / args.seconds,
            "model_cpu_ms_per_audio_s": 1000 * statistics.median(model_s) / args.seconds,
        }
        print(name, ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures[name].items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["peak_rss_mib"] = {"before_models": before, "three_loaded": peak}
    print(f"peak resident memory: {before:.0f} MiB before the models (TensorFlow imported), {peak:.0f} MiB after")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
