"""Live audio: latency from the end of a sound to its answer, with N real-time streams at once.

    .venv/bin/python bench/live.py [--streams 1,8,32,64] [--strings 4] [--json FILE]

``audio-maas serve --model models/digits`` on loopback. Each stream plays FSDD digit strings (8
digits of one test-split speaker, 0.2-0.7 s of quiet noise between) in 100 ms INT16 pieces paced
in real time, through ``audio_maas.client.live.listen`` (tritonclient.grpc's stream API); the
streams run as threads of one client process, whose CPU is reported too: a Python client on the
same two cores takes its share. For each N: p50 and p99 of the latency (answer's arrival minus
the moment the piece carrying the sound's end was sent), the answers per second, each server's
CPU per second of audio, and whether the streams kept up (p99 under 1 s, every answer in). The
same strings sent whole with ``segment`` give the baseline of what should be read; the streamed
strings are compared with it, digit by digit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.client.live import Heard, file_pieces, listen  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from bench.serving import cpu_seconds  # noqa: E402
from bench.soak import server_pid, start_service  # noqa: E402

RATE = 8000
DIGITS = 8


def digit_strings(data_dir: Path, count: int) -> list[tuple[np.ndarray, str]]:
    """``count`` recordings of 8 digits each, by the test split's speakers (utterances 0-4)."""
    rng = np.random.default_rng(0)
    speakers = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    strings = []
    for index in range(count):
        speaker = speakers[index % len(speakers)]
        digits = rng.integers(0, 10, DIGITS)
        parts = [0.002 * rng.standard_normal(int(RATE * 0.3))]
        for digit in digits:
            audio, rate = soundfile.read(
                data_dir / "recordings" / f"{digit}_{speaker}_{rng.integers(0, 5)}.wav", dtype="float32"
            )
            assert rate == RATE
            parts += [audio, 0.002 * rng.standard_normal(int(RATE * rng.uniform(0.2, 0.7)))]
        strings.append((np.concatenate(parts).astype(np.float32), " ".join(str(d) for d in digits)))
    return strings


def segmented(url: str, audio: np.ndarray) -> str:
    """The string ``segment`` reads in the whole recording."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    waveform = httpclient.InferInput("waveform", [1, len(audio)], "FP32")
    waveform.set_data_from_numpy(audio[np.newaxis])
    answer = client.infer("digits", [waveform], parameters={"sample_rate": RATE, "segment": True},
                          outputs=[httpclient.InferRequestedOutput("sequence")])  # fmt: skip
    return str(answer.as_numpy("sequence")[0].decode())


def run_streams(grpc_url: str, strings: list[tuple[np.ndarray, str]], count: int) -> dict[str, Any]:
    """``count`` streams at once, stream i playing string i mod len(strings)."""
    heard: list[list[Heard]] = [[] for _ in range(count)]
    errors: list[str] = []

    def one(index: int) -> None:
        audio, _ = strings[index % len(strings)]
        try:
            listen(file_pieces(audio, RATE), url=grpc_url, model_name="digits", sample_rate=RATE,
                   on_heard=heard[index].append)  # fmt: skip
        except RuntimeError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(0.1 / count)  # spread the streams' pieces over the 100 ms between pieces
    for thread in threads:
        thread.join()
    return {"heard": heard, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--streams", default="1,8,32,64")
    parser.add_argument("--strings", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    strings = digit_strings(args.data_dir, args.strings)
    settings = ServiceSettings(http_port=18280, predictor_http_port=18285)
    serve = start_service(settings, "--model", str(REPO / "models" / "digits"), "--max-streams", "512",
                          timeout_s=180)  # fmt: skip
    figures: dict[str, Any] = {"strings_s": [round(len(a) / RATE, 2) for a, _ in strings], "levels": []}
    try:
        pids = {
            "transformer": server_pid("transformer", settings.http_port),
            "predictor": server_pid("predictor", settings.predictor_http_port),
        }
        whole = [segmented(settings.url, audio) for audio, _ in strings]
        figures["segment_reads"] = sum(w == s for w, (_, s) in zip(whole, strings, strict=True))
        print(f"segment on the whole recordings: {figures['segment_reads']} of {len(strings)} strings read right")
        grpc_url = f"127.0.0.1:{settings.grpc_port}"
        run_streams(grpc_url, strings, 1)  # warm
        for count in (int(n) for n in args.streams.split(",")):
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            client_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            result = run_streams(grpc_url, strings, count)
            wall = time.monotonic() - started
            client_after = resource.getrusage(resource.RUSAGE_SELF)
            audio_s = sum(len(strings[i % len(strings)][0]) / RATE for i in range(count))
            latencies = [h.latency_s for stream in result["heard"] for h in stream]
            agree = sum(
                " ".join(h.label for h in stream) == whole[i % len(strings)] for i, stream in enumerate(result["heard"])
            )
            level = {
                "streams": count,
                "answers": len(latencies),
                "errors": result["errors"][:3],
                "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
                "p99_ms": 1000 * float(np.percentile(latencies, 99)) if latencies else None,
                "strings_as_segment_reads_them": agree,
                "wall_s": wall,
                **{f"{name}_cpu_ms_per_audio_s": (cpu_seconds(pid) - before[name]) * 1000 / audio_s
                   for name, pid in pids.items()},
                "client_cpu_ms_per_audio_s": 1000 * (client_after.ru_utime + client_after.ru_stime
                                                     - client_before.ru_utime - client_before.ru_stime) / audio_s,
            }  # fmt: skip
            level["kept_up"] = not result["errors"] and level["p99_ms"] is not None and level["p99_ms"] < 1000
            figures["levels"].append(level)
            print(
                f"{count:>3} streams: p50 {level['p50_ms']:.0f} ms, p99 {level['p99_ms']:.0f} ms, "
                f"{len(latencies)} answers, {agree}/{count} strings as segment reads them, "
                f"errors {len(result['errors'])}; "
                f"CPU ms per audio s: transformer {level['transformer_cpu_ms_per_audio_s']:.1f}, "
                f"predictor {level['predictor_cpu_ms_per_audio_s']:.1f}, "
                f"client {level['client_cpu_ms_per_audio_s']:.1f}"
                f"{'' if level['kept_up'] else '  (fell behind)'}",
                flush=True,
            )
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    figures["machine"] = f"{os.cpu_count()} cores"
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
