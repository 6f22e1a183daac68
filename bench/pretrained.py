"""What each pretrained model costs, per second of audio, in one process and through the service.

    .venv/bin/python bench/pretrained.py [--seconds 10] [--repeats 5] [--requests 48] [--json FILE]

The models are those ``make import-pretrained`` converts into build/pretrained, where ``audio-maas
serve`` finds them. The audio is a 44.1 kHz stereo recording of ``--seconds``: a C-major arpeggio
of piano-like tones over pink noise at -30 dB, sent as one WAV file per request.

(a) The baseline, in this process: the windows (decode excluded: resample, framing, log-mel),
and the model on them in calls of at most 32 rows, as the predictor makes them
(``max_batch_size``), on one TensorFlow thread; CPU ms per second of audio.
(b) ``audio-maas serve`` with no flags (the six models: ours and the three pretrained), driven by
``hey`` at concurrency 1 and 8 with one file per request: p50 and p99, and CPU ms per second of
audio in each server, with its ratio to (a).
(c) Resident memory of both servers with the six models loaded, after (b), against the same
servers with our three alone (like with like: the earlier figures were for those three).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.cli.serving import BUNDLED_REPOSITORY, PRETRAINED_REPOSITORY  # noqa: E402
from audio_maas.features.interface import ModelInterface  # noqa: E402
from audio_maas.pretrained.archives import ARCHIVES  # noqa: E402
from audio_maas.savedmodel.load import load_serving_function  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from bench.serving import binary_body, cpu_seconds, hey  # noqa: E402
from bench.soak import rss_mib, server_pid, start_service  # noqa: E402

RATE = 44100
BATCH = 32
"""The predictor's default ``max_batch_size``: rows per model call."""
CONCURRENCY = (1, 8)


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


def in_process(audio: np.ndarray, seconds: float, repeats: int) -> dict[str, dict[str, float]]:
    """(a): each model's windows and model CPU ms per second of audio, in this process."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    figures = {}
    for name in ARCHIVES:
        interface = ModelInterface.read(PRETRAINED_REPOSITORY / name)
        serve = load_serving_function(PRETRAINED_REPOSITORY / name)
        windows = interface.windows(waveform=audio, sample_rate=RATE)
        run_in_calls(serve, windows.rows)  # trace once
        window_s, model_s = [], []
        for _ in range(repeats):
            started = time.process_time()
            windows = interface.windows(waveform=audio, sample_rate=RATE)
            cut = time.process_time()
            run_in_calls(serve, windows.rows)
            window_s.append(cut - started)
            model_s.append(time.process_time() - cut)
        figures[name] = {
            "windows": len(windows.rows),
            "windows_cpu_ms_per_audio_s": 1000 * statistics.median(window_s) / seconds,
            "model_cpu_ms_per_audio_s": 1000 * statistics.median(model_s) / seconds,
        }
        print(
            f"(a) {name:>10}: {len(windows.rows)} windows; CPU ms per audio second: windows "
            f"{figures[name]['windows_cpu_ms_per_audio_s']:.2f}, model {figures[name]['model_cpu_ms_per_audio_s']:.2f}"
        )
    return figures


def through_the_service(wav: bytes, seconds: float, requests: int, baseline: dict[str, Any]) -> dict[str, Any]:
    """(b) and (c): hey against ``audio-maas serve`` of the six, then memory of six and of three."""
    settings = ServiceSettings(http_port=18180, predictor_http_port=18185)
    figures: dict[str, Any] = {}
    serve = start_service(settings, timeout_s=300)
    try:
        pids = {
            "transformer": server_pid("transformer", settings.http_port),
            "predictor": server_pid("predictor", settings.predictor_http_port),
        }
        figures["rss_mib_six_loaded"] = {name: rss_mib(pid) for name, pid in pids.items()}
        with tempfile.TemporaryDirectory() as scratch:
            body, headers = binary_body(wav, Path(scratch) / "body")
            for name in ARCHIVES:
                url = f"{settings.url}/v2/models/{name}/infer"
                warm = ["hey", "-n", "16", "-c", "8", "-m", "POST", "-D", str(body), *headers, url]
                subprocess.run(warm, check=True, capture_output=True)  # connections, traces of batch shapes
                figures[name] = []
                for concurrency in CONCURRENCY:
                    count = requests - requests % concurrency
                    before = {server: cpu_seconds(pid) for server, pid in pids.items()}
                    level: dict[str, float] = {"concurrency": concurrency, "requests": count}
                    level.update(hey(url, body, headers, requests=count, concurrency=concurrency))
                    for server, pid in pids.items():
                        level[f"{server}_cpu_ms_per_audio_s"] = (
                            (cpu_seconds(pid) - before[server]) * 1000 / count / seconds
                        )
                    in_process_ms = (
                        baseline[name]["windows_cpu_ms_per_audio_s"] + baseline[name]["model_cpu_ms_per_audio_s"]
                    )
                    served_ms = level["transformer_cpu_ms_per_audio_s"] + level["predictor_cpu_ms_per_audio_s"]
                    level["cpu_ratio_to_in_process"] = served_ms / in_process_ms
                    figures[name].append(level)
                    print(
                        f"(b) {name:>10} c={concurrency}: {level['clips_per_s'] * seconds:6.1f} audio s/s   "
                        f"p50 {level['p50_s'] * 1000:7.0f} ms   p99 {level['p99_s'] * 1000:7.0f} ms   "
                        f"CPU ms per audio s: transformer {level['transformer_cpu_ms_per_audio_s']:.2f}, "
                        f"predictor {level['predictor_cpu_ms_per_audio_s']:.2f} "
                        f"({level['cpu_ratio_to_in_process']:.2f}x in process)"
                    )
        figures["rss_mib_six_after_load"] = {name: rss_mib(pid) for name, pid in pids.items()}
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    serve = start_service(settings, "--model-repository", str(BUNDLED_REPOSITORY), timeout_s=300)
    try:
        figures["rss_mib_three_loaded"] = {
            "transformer": rss_mib(server_pid("transformer", settings.http_port)),
            "predictor": rss_mib(server_pid("predictor", settings.predictor_http_port)),
        }
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    for key in ("rss_mib_three_loaded", "rss_mib_six_loaded", "rss_mib_six_after_load"):
        print(f"(c) {key}: " + ", ".join(f"{server} {mib:.0f} MiB" for server, mib in figures[key].items()))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the recording")
    parser.add_argument("--repeats", type=int, default=5, help="in-process repeats of each model")
    parser.add_argument(
        "--requests", type=int, default=104, help="requests at each concurrency (hey prints p99 from 100)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    missing = [name for name in ARCHIVES if not (PRETRAINED_REPOSITORY / name / "saved_model.pb").is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not in {PRETRAINED_REPOSITORY}: run make import-pretrained first")
    import soundfile

    audio = arpeggio(args.seconds)
    wav = io.BytesIO()
    soundfile.write(wav, audio, RATE, format="WAV", subtype="PCM_16")
    figures: dict[str, Any] = {"seconds": args.seconds}
    figures["in_process"] = in_process(audio, args.seconds, args.repeats)
    figures["service"] = through_the_service(wav.getvalue(), args.seconds, args.requests, figures["in_process"])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
