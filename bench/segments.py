"""Long recordings: how well ``segment`` reads sequences of spoken digits.

    .venv/bin/python bench/segments.py [--split test] [--sequences 200] [--model models/digits] [--json FILE]
    .venv/bin/python bench/segments.py --service [--baseline CHECKOUT] [--pairs 2]

Builds sequences of 4 to 7 digits, each from one FSDD speaker's recordings of the split (``test``:
takes 0-4 of every speaker, which no bundled model trained on; ``train`` to tune on), with pauses
of 0.15-0.6 s and 0.2-0.5 s of silence at either end. Half are mixed with real background noise
(Speech Commands' ``_silence_`` clips, looped) at 10-20 dB SNR. Each goes through the
transformer's own segmentation (``transformer.segment.segment_features``, default options) and the
model's SavedModel, as the service runs them. Prints the exact-sequence rate and the digit error
rate (edit distance / digits), clean and in noise, and the cost per recording.

The noise clips are among those the digit models' ``unknown`` class was trained on; the speech is not.

``--service`` measures the cost through ``audio-maas serve`` with ``hey``: one FSDD file per request
at concurrency 1 and 32, and one sequence recording with and without ``segment`` at concurrency 1
(p50 and the CPU both servers spent per request). With ``--baseline`` (another checkout of this
repo, e.g. ``git worktree add /tmp/before <commit>``), the plain requests alternate between the two
checkouts' services, ``--pairs`` times: whether plain requests got slower.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from predictor.savedmodel import load_serving_function  # noqa: E402
from serving.contract import INPUT_NAME, OUTPUT_NAME, read_labels  # noqa: E402
from training.dataset import load_fsdd, select_split  # noqa: E402
from transformer.frontend import FeatureSpec, FrontEnd, decode  # noqa: E402
from transformer.segment import SegmentOptions, segment_features  # noqa: E402

RATE = 8000  # FSDD's


def build_sequences(data_dir: Path, *, split: str, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` recordings: ``{"waveform", "digits", "noisy"}``, float32 at 8 kHz."""
    import librosa

    rng = np.random.default_rng(seed)
    by_speaker: dict[str, dict[str, list[np.ndarray]]] = {}
    for u in select_split(load_fsdd(data_dir / "fsdd"), split):  # type: ignore[arg-type]
        waveform, rate = decode(data=u.data)
        by_speaker.setdefault(u.speaker, {}).setdefault(u.label, []).append(waveform.mean(axis=1))
        assert rate == RATE
    noises = []
    for path in sorted((data_dir / "speech-commands" / "_silence_").glob("*.flac"))[:40]:
        waveform, rate = decode(data=path.read_bytes())
        noises.append(librosa.resample(waveform.mean(axis=1), orig_sr=rate, target_sr=RATE))
    speakers = sorted(by_speaker)
    sequences = []
    for i in range(count):
        recordings = by_speaker[speakers[rng.integers(len(speakers))]]
        digits = [str(d) for d in rng.integers(0, 10, size=rng.integers(4, 8))]
        pieces = [np.zeros(int(rng.uniform(0.2, 0.5) * RATE), np.float32)]
        for j, digit in enumerate(digits):
            takes = recordings[digit]
            pieces.append(takes[rng.integers(len(takes))])
            pause_s = rng.uniform(0.15, 0.6) if j + 1 < len(digits) else rng.uniform(0.2, 0.5)
            pieces.append(np.zeros(int(pause_s * RATE), np.float32))
        speech = np.concatenate(pieces).astype(np.float32)
        noisy = i % 2 == 1
        if noisy:
            noise = np.resize(noises[rng.integers(len(noises))], speech.shape)
            speech_rms = np.sqrt(np.mean(np.concatenate(pieces[1::2]) ** 2))
            noise_rms = np.sqrt(np.mean(noise**2)) + 1e-12
            snr_db = rng.uniform(10, 20)
            speech = speech + noise * (speech_rms / noise_rms / 10 ** (snr_db / 20))
            speech = (speech / max(1.0, np.abs(speech).max())).astype(np.float32)
        sequences.append({"waveform": speech, "digits": digits, "noisy": noisy})
    return sequences


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def evaluate(sequences: list[dict[str, Any]], model_dir: Path, options: SegmentOptions | None = None) -> dict[str, Any]:
    import tensorflow as tf

    spec = FeatureSpec.read(model_dir)
    labels = read_labels(model_dir)
    front_end = FrontEnd(spec)
    options = options or SegmentOptions.for_spec(spec)
    serve = load_serving_function(model_dir)
    results: dict[str, Any] = {"clean": [], "noisy": []}
    featurise_s = model_s = 0.0
    for sequence in sequences:
        started = time.perf_counter()
        features, _ = segment_features(front_end, waveform=sequence["waveform"], sample_rate=RATE, options=options)
        featurise_s += time.perf_counter() - started
        started = time.perf_counter()
        probabilities = serve(**{INPUT_NAME: tf.constant(features)})[OUTPUT_NAME].numpy()
        model_s += time.perf_counter() - started
        said = [labels[i] for i in probabilities[1:].argmax(axis=1)]
        results["noisy" if sequence["noisy"] else "clean"].append((sequence["digits"], said))
    report: dict[str, Any] = {"options": options.model_dump()}
    for name, pairs in [*results.items(), ("all", results["clean"] + results["noisy"])]:
        if not pairs:
            continue
        errors = sum(edit_distance(truth, said) for truth, said in pairs)
        report[name] = {
            "sequences": len(pairs),
            "exact": sum(truth == said for truth, said in pairs) / len(pairs),
            "digit_error_rate": errors / sum(len(truth) for truth, _ in pairs),
            "wrong_count": sum(len(truth) != len(said) for truth, said in pairs) / len(pairs),
        }
    report["ms_per_recording"] = {
        "segment_and_features": 1000 * featurise_s / len(sequences),
        "model": 1000 * model_s / len(sequences),
    }
    report["mean_seconds"] = float(np.mean([len(s["waveform"]) / RATE for s in sequences]))
    report["examples"] = [
        {"truth": " ".join(t), "said": " ".join(s)} for t, s in (results["noisy"] + results["clean"])[:0:-25]
    ]
    return report


def _binary_body(data: bytes, scratch: Path, name: str, **request: Any) -> tuple[Path, list[str]]:
    """One audio file as a binary V2 request (``request``: more JSON fields), and ``hey``'s headers."""
    from serving.codec import encode_bytes_tensor
    from serving.contract import AUDIO_INPUT

    raw = encode_bytes_tensor([data])
    tensor = {"name": AUDIO_INPUT, "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [tensor], **request}).encode()
    (scratch / name).write_bytes(header + raw)
    return scratch / name, ["-T", "application/octet-stream", "-H", f"Inference-Header-Content-Length: {len(header)}"]


def service_costs(data_dir: Path, *, baseline: Path | None, pairs: int, requests: int) -> None:
    import tempfile

    from bench.serving import cpu_seconds, hey
    from bench.soak import REPO as THIS_CHECKOUT
    from bench.soak import server_pid, start_service
    from serving.settings import ServiceSettings
    from tests.conftest import encode

    settings = ServiceSettings(http_port=18380, predictor_http_port=18385)
    url = f"{settings.url}/v2/models/{settings.model_name}/infer"
    clip = select_split(load_fsdd(data_dir / "fsdd"), "test")[0].data
    waveform = build_sequences(data_dir, split="test", count=1, seed=0)[0]["waveform"]
    recording = encode(waveform, sample_rate=RATE, format="WAV")
    with tempfile.TemporaryDirectory() as scratch:
        plain = _binary_body(clip, Path(scratch), "clip", outputs=[{"name": "label"}])
        long_bodies = {
            "plain": _binary_body(recording, Path(scratch), "plain", outputs=[{"name": "label"}]),
            "segment": _binary_body(
                recording, Path(scratch), "segment", outputs=[{"name": "sequence"}], parameters={"segment": True}
            ),
        }
        checkouts = {"this": THIS_CHECKOUT} | ({"baseline": baseline} if baseline else {})
        for pair in range(pairs):
            for label, checkout in checkouts.items():
                process = start_service(settings, checkout=checkout)
                try:
                    hey(url, *plain, requests=200, concurrency=8)  # warm
                    c1 = hey(url, *plain, requests=requests, concurrency=1)
                    c32 = hey(url, *plain, requests=requests, concurrency=32)
                    print(
                        f"pair {pair + 1}, {label:8s} one FSDD file per request: c=1 p50 {c1['p50_s'] * 1000:.2f} ms, "
                        f"c=32 {c32['clips_per_s']:.0f} clips/s",
                        flush=True,
                    )
                    if label != "this" or pair:
                        continue
                    ports = {"transformer": settings.http_port, "predictor": settings.predictor_http_port}
                    pids = [server_pid(module, port) for module, port in ports.items()]
                    for name, body in long_bodies.items():
                        cpu = sum(cpu_seconds(pid) for pid in pids)
                        figures = hey(url, *body, requests=200, concurrency=1)
                        cpu_ms = (sum(cpu_seconds(pid) for pid in pids) - cpu) / 200 * 1000
                        print(
                            f"    a {len(waveform) / RATE:.1f} s sequence of digits, {name:8s}: "
                            f"c=1 p50 {figures['p50_s'] * 1000:.1f} ms, CPU {cpu_ms:.1f} ms per request",
                            flush=True,
                        )
                finally:
                    process.terminate()
                    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--sequences", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "digits")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--service", action="store_true", help="the cost through the service instead")
    parser.add_argument("--baseline", type=Path, help="with --service: another checkout to compare plain requests")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument(
        "--requests", type=int, default=1920, help="with --service: plain requests per level (a multiple of 32)"
    )
    args = parser.parse_args()
    if args.service:
        service_costs(args.data_dir, baseline=args.baseline, pairs=args.pairs, requests=args.requests)
        return
    sequences = build_sequences(args.data_dir, split=args.split, count=args.sequences, seed=args.seed)
    report = evaluate(sequences, args.model)
    for name in ("clean", "noisy", "all"):
        figures = report[name]
        print(
            f"{name:6s} {figures['sequences']:4d} sequences: exact {100 * figures['exact']:5.1f}%, "
            f"digit error rate {100 * figures['digit_error_rate']:5.1f}%, "
            f"wrong digit count {100 * figures['wrong_count']:.1f}%"
        )
    costs = report["ms_per_recording"]
    print(
        f"per recording ({report['mean_seconds']:.1f} s on average): segmentation and features "
        f"{costs['segment_and_features']:.1f} ms, model {costs['model']:.1f} ms"
    )
    for example in report["examples"]:
        print(f"    {example['truth']:15s} -> {example['said']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
