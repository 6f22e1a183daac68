"""Speech to text, measured: ``transcribe`` through the service against CTranslate2's own runtime
on the same weights and the same clips, in the same run.

    .venv/bin/python bench/speech.py [--requests 100] [--json bench/results-speech-DATE.json]

(a) Word error rate on read speech with public-domain transcripts (JFK's inaugural sentence, the
    first eight LJ Speech clips: ``tests/data/speech``), each clip one request, normalised with
    openai-whisper's own English normaliser (from its pinned source archive) and scored with
    jiwer; CTranslate2 float32 and int8 decode the same log-mel features. Then the eight LJ clips
    joined with pauses into one 54 s recording: what the service makes of it whole against the
    clips one by one (a word lost or doubled at a cut shows as an error between the two).
(b) Cost: ``hey`` sends the JFK clip (11 s) at concurrency 1 and 4; CPU of the transformer and the
    predictor (from /proc) per audio second, and the real-time factor; CTranslate2's CPU per audio
    second in process (one thread, ``OMP_WAIT_POLICY=PASSIVE``) on one window and a batch of 4.
(c) Start-up and memory: seconds from ``audio-maas serve`` to the predictor's ready, and its
    resident memory with this model loaded, before and after (b).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # CTranslate2's OpenMP spins otherwise, doubling its CPU

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.client.check import wait_ready  # noqa: E402
from audio_maas.pretrained.archives import ARCHIVES, fetch  # noqa: E402
from audio_maas.pretrained.convert import WHISPER_MODEL  # noqa: E402
from audio_maas.pretrained.whisper import PROMPT, SAMPLE_RATE, WINDOW_SAMPLES  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from bench.serving import binary_body, cpu_seconds, hey  # noqa: E402
from bench.soak import rss_mib, server_pid  # noqa: E402

SPEECH = REPO / "tests" / "data" / "speech"
JFK = SPEECH / "jfk.flac"
JFK_TEXT = (
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)
CONCURRENCY = (1, 4)
PAUSE_S = 0.5


def clips() -> list[tuple[str, np.ndarray, str]]:
    """(name, 16 kHz mono waveform, transcript) of each clip."""
    found = [("jfk", soundfile.read(JFK, dtype="float32")[0], JFK_TEXT)]
    for line in (SPEECH / "ljspeech" / "transcripts.txt").read_text().splitlines():
        name, text = line.split(" ", 1)
        found.append((name, soundfile.read(SPEECH / "ljspeech" / f"{name}.flac", dtype="float32")[0], text))
    return found


def whisper_normaliser(unpacked: Path) -> Any:
    """openai-whisper's ``EnglishTextNormalizer``, from its source archive alone (its package imports torch)."""
    (package,) = unpacked.glob("openai_whisper-*/whisper")
    sys.path.insert(0, str(package))
    return importlib.import_module("normalizers").EnglishTextNormalizer()


def flac(waveform: np.ndarray) -> bytes:
    with tempfile.SpooledTemporaryFile() as out:
        soundfile.write(out, waveform, SAMPLE_RATE, format="FLAC")
        out.seek(0)
        return out.read()


def served_text(url: str, data: bytes) -> str:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=600)
    audio = httpclient.InferInput("audio", [1], "BYTES")
    audio.set_data_from_numpy(np.array([data], dtype=object), binary_data=True)
    return str(client.infer("transcribe", [audio]).as_numpy("text")[0].decode())


def ctranslate2_runs(model_dir: Path, unpacked: Path, waveforms: list[np.ndarray]) -> dict[str, Any]:
    """Texts and CPU per audio second of CTranslate2 float32 and int8 on our log-mel of each clip."""
    import ctranslate2
    import tensorflow as tf

    from audio_maas.features.transcript import Vocabulary
    from audio_maas.protocol.model_dir import read_labels

    vocabulary = Vocabulary(read_labels(model_dir))
    log_mel = tf.saved_model.load(str(model_dir)).holding.log_mel
    rows = np.zeros([len(waveforms), WINDOW_SAMPLES], np.float32)
    for row, waveform in zip(rows, waveforms, strict=True):
        row[: len(waveform)] = waveform
    features = [np.ascontiguousarray(log_mel(tf.constant(row[None])).numpy().transpose(0, 2, 1)) for row in rows]
    jfk = features[0]
    seconds = len(waveforms[0]) / SAMPLE_RATE
    runs: dict[str, Any] = {}
    for compute_type in ("float32", "int8"):
        model = ctranslate2.models.Whisper(str(unpacked / WHISPER_MODEL), compute_type=compute_type, intra_threads=1)
        texts = [
            vocabulary.text(
                np.array(model.generate(ctranslate2.StorageView.from_array(f), [list(PROMPT)])[0].sequences_ids[0])
            )
            for f in features
        ]
        cost = {}
        for batch in CONCURRENCY:
            window = ctranslate2.StorageView.from_array(np.repeat(jfk, batch, axis=0))
            model.generate(window, [list(PROMPT)] * batch)
            started = time.process_time()
            for _ in range(3):
                model.generate(window, [list(PROMPT)] * batch)
            cost[batch] = (time.process_time() - started) / 3 / batch / seconds
        runs[compute_type] = {"texts": texts, "cpu_s_per_audio_s": cost}
        print(
            f"(b) CTranslate2 {compute_type}: CPU s per audio s "
            + ", ".join(f"{c:.3f} (batch {b})" for b, c in cost.items())
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "build" / "pretrained" / "transcribe")
    parser.add_argument("--requests", type=int, default=100, help="per concurrency level (hey prints a p99 from 100)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import jiwer

    unpacked = fetch(ARCHIVES["transcribe"], REPO / "build" / "pretrained-archives")
    if not args.model_dir.is_dir():
        subprocess.run(
            [sys.executable, "-m", "audio_maas.pretrained", "--out", str(args.model_dir.parent), "transcribe"],
            check=True,
        )
    normalise = whisper_normaliser(unpacked)
    corpus = clips()
    references = [normalise(text) for _, _, text in corpus]
    figures: dict[str, Any] = {"clips": [name for name, _, _ in corpus],
                               "audio_s": sum(len(w) for _, w, _ in corpus) / SAMPLE_RATE}  # fmt: skip

    settings = ServiceSettings(http_port=18280, predictor_http_port=18285)
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "audio_maas.cli", "serve", "--model", str(args.model_dir),
         "--http-port", str(settings.http_port), "--predictor-port", str(settings.predictor_http_port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        predictor_ready = [f"http://127.0.0.1:{settings.predictor_http_port}/v2/health/ready"]
        if wait_ready(predictor_ready, timeout_s=300, interval_s=0.1, stop=lambda: serve.poll() is not None):
            raise SystemExit("the predictor did not start")
        figures["predictor_ready_s"] = time.monotonic() - started
        if wait_ready([f"{settings.url}/v2/health/ready"], timeout_s=300, stop=lambda: serve.poll() is not None):
            raise SystemExit("the transformer did not start")
        pids = {name: server_pid(name, port) for name, port in
                (("transformer", settings.http_port), ("predictor", settings.predictor_http_port))}  # fmt: skip
        figures["rss_mib_loaded"] = {name: rss_mib(pid) for name, pid in pids.items()}
        print(f"(c) predictor ready {figures['predictor_ready_s']:.1f} s after start; RSS {figures['rss_mib_loaded']}")

        served = [normalise(served_text(settings.url, flac(waveform))) for _, waveform, _ in corpus]
        joined = np.concatenate([np.concatenate([w, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)])
                                 for name, w, _ in corpus if name.startswith("LJ")])  # fmt: skip
        whole = normalise(served_text(settings.url, flac(joined)))
        one_by_one = " ".join(text for (name, _, _), text in zip(corpus, served, strict=True) if name.startswith("LJ"))
        lj_reference = " ".join(
            ref for (name, _, _), ref in zip(corpus, references, strict=True) if name.startswith("LJ")
        )

        with tempfile.TemporaryDirectory() as scratch:
            body, headers = binary_body(JFK.read_bytes(), Path(scratch) / "body")
            url = f"{settings.url}/v2/models/transcribe/infer"
            subprocess.run(["hey", "-n", "4", "-c", "4", "-m", "POST", "-D", str(body), *headers, url], check=True,
                           capture_output=True)  # fmt: skip
            seconds = soundfile.info(JFK).duration
            figures["service"] = {}
            for concurrency in CONCURRENCY:
                count = args.requests - args.requests % concurrency
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                level: dict[str, Any] = hey(url, body, headers, requests=count, concurrency=concurrency)
                for name, pid in pids.items():
                    level[f"{name}_cpu_s_per_audio_s"] = (cpu_seconds(pid) - before[name]) / count / seconds
                level["real_time_factor_p50"] = level["p50_s"] / seconds
                figures["service"][concurrency] = level
                print(
                    f"(b) service c={concurrency}: p50 {level['p50_s']:.2f} s, "
                    f"real-time factor {level['real_time_factor_p50']:.3f}, "
                    f"CPU s per audio s: transformer {level['transformer_cpu_s_per_audio_s']:.3f}, "
                    f"predictor {level['predictor_cpu_s_per_audio_s']:.3f}"
                )
        figures["rss_mib_after"] = {name: rss_mib(pid) for name, pid in pids.items()}
    finally:
        serve.terminate()
        serve.wait(timeout=60)

    ct2 = ctranslate2_runs(args.model_dir, unpacked, [w for _, w, _ in corpus])
    figures["wer"] = {"service": jiwer.wer(references, served)}
    for compute_type, run in ct2.items():
        figures["wer"][f"ctranslate2_{compute_type}"] = jiwer.wer(references, [normalise(t) for t in run["texts"]])
    figures["wer"]["long_recording_whole"] = jiwer.wer(lj_reference, whole)
    figures["wer"]["long_recording_one_by_one"] = jiwer.wer(lj_reference, one_by_one)
    figures["wer"]["long_whole_against_one_by_one"] = jiwer.wer(one_by_one, whole)
    figures["ctranslate2"] = {k: v["cpu_s_per_audio_s"] for k, v in ct2.items()}
    figures["texts"] = {
        name: {"reference": reference, "service": text, **{k: normalise(v["texts"][i]) for k, v in ct2.items()}}
        for i, ((name, _, _), reference, text) in enumerate(zip(corpus, references, served, strict=True))
    }
    figures["texts"]["long_recording"] = {"reference": lj_reference, "whole": whole, "one_by_one": one_by_one}
    for concurrency in CONCURRENCY:
        level = figures["service"][concurrency]
        served_cpu = level["transformer_cpu_s_per_audio_s"] + level["predictor_cpu_s_per_audio_s"]
        for compute_type in ct2:
            level[f"cpu_ratio_to_ctranslate2_{compute_type}"] = (
                served_cpu / figures["ctranslate2"][compute_type][concurrency]
            )
        print(f"(b) c={concurrency}: service CPU {served_cpu:.3f} s per audio s = "
              f"{level['cpu_ratio_to_ctranslate2_float32']:.2f}x CTranslate2 float32, "
              f"{level['cpu_ratio_to_ctranslate2_int8']:.2f}x int8")  # fmt: skip
    print("(a) WER: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in figures["wer"].items()))
    print(f"(c) RSS after (b): {figures['rss_mib_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
