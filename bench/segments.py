"""Long recordings: how well ``segment`` reads sequences of spoken digits.

    .venv/bin/python bench/segments.py [--split test] [--sequences 200] [--model models/digits] [--json FILE]

Builds sequences of 4 to 7 digits, each from one FSDD speaker's recordings of the split (``test``:
takes 0-4 of every speaker, which no bundled model trained on; ``train`` to tune on), with pauses
of 0.15-0.6 s and 0.2-0.5 s of silence at either end. Half are mixed with real background noise
(Speech Commands' ``_silence_`` clips, looped) at 10-20 dB SNR. Each goes through the
transformer's own segmentation (``audio_maas.features.segment.segment_features``, default options) and the
model's SavedModel, as the service runs them. Prints the exact-sequence rate and the digit error
rate (edit distance / digits), clean and in noise, and the cost per recording.

The noise clips are among those the digit models' ``unknown`` class was trained on; the speech is not.
Its cost through the service is measured by ``bench/insight.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.features.audio import decode  # noqa: E402
from audio_maas.features.frontend import FrontEnd  # noqa: E402
from audio_maas.features.segment import SegmentOptions, segment_features  # noqa: E402
from audio_maas.features.spec import FeatureSpec  # noqa: E402
from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME  # noqa: E402
from audio_maas.protocol.model_dir import read_labels  # noqa: E402
from audio_maas.savedmodel.load import load_serving_function  # noqa: E402
from audio_maas.training.dataset import UNKNOWN_LABEL, load_fsdd, select_split  # noqa: E402

RATE = 8000  # FSDD's


def build_sequences(data_dir: Path, *, split: str, count: int, seed: int, pauses: bool = True) -> list[dict[str, Any]]:
    """``count`` recordings: ``{"waveform", "digits", "noisy"}``, float32 at 8 kHz. Without
    ``pauses``: each recording's silence trimmed off, the digits 0-40 ms apart, no noise."""
    import librosa

    rng = np.random.default_rng(seed)
    by_speaker: dict[str, dict[str, list[np.ndarray]]] = {}
    for u in select_split(load_fsdd(data_dir / "fsdd"), split):  # type: ignore[arg-type]
        waveform, rate = decode(data=u.data, max_duration_s=60)
        mono = waveform.mean(axis=1)
        if not pauses:
            mono = librosa.effects.trim(mono, top_db=30, frame_length=256, hop_length=80)[0]
        by_speaker.setdefault(u.speaker, {}).setdefault(u.label, []).append(mono)
        assert rate == RATE
    noises = []
    for path in sorted((data_dir / "speech-commands" / "_silence_").glob("*.flac"))[:40]:
        waveform, rate = decode(data=path.read_bytes(), max_duration_s=60)
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
            pieces.append(np.zeros(int((pause_s if pauses else pause_s / 15) * RATE), np.float32))
        speech = np.concatenate(pieces).astype(np.float32)
        noisy = pauses and i % 2 == 1
        if noisy:
            noise = np.resize(noises[rng.integers(len(noises))], speech.shape)
            speech_rms = np.sqrt(np.mean(np.concatenate(pieces[1::2]) ** 2))
            noise_rms = np.sqrt(np.mean(noise**2)) + 1e-12
            snr_db = rng.uniform(10, 20)
            speech = speech + noise * (speech_rms / noise_rms / 10 ** (snr_db / 20))
            speech = (speech / max(1.0, np.abs(speech).max())).astype(np.float32)
        sequences.append({"waveform": speech, "digits": digits, "noisy": noisy})
    return sequences


def sliding_window(
    sequences: list[dict[str, Any]], model_dir: Path, *, window_s: float = 0.3, hop_s: float = 0.05, min_run: int = 3
) -> dict[str, Any]:
    """The stretch goal's try for digits said without pauses: classify a ``window_s`` window every
    ``hop_s`` (each through the model's own front end, as a clip of its own), then read the digits
    off the windows' answers: a label that holds ``min_run`` windows in a row is one digit, and
    ``unknown`` is none. A digit said twice in a row reads as one. Tuned on the training takes."""
    import tensorflow as tf

    labels = read_labels(model_dir)
    front_end = FrontEnd(FeatureSpec.read(model_dir))
    serve = load_serving_function(model_dir)
    window, hop = int(window_s * RATE), int(hop_s * RATE)
    pairs = []
    for sequence in sequences:
        waveform = sequence["waveform"]
        clips = [waveform[start : start + window] for start in range(0, len(waveform) - window + 1, hop)]
        features = np.stack([front_end.featurise(front_end.clip_from_mono(clip)) for clip in clips])
        answers = serve(**{INPUT_NAME: tf.constant(features)})[OUTPUT_NAME].numpy().argmax(axis=1)
        runs = [(int(a), len(list(group))) for a, group in itertools.groupby(answers)]
        said = [labels[a] for a, length in runs if length >= min_run and labels[a] != UNKNOWN_LABEL]
        pairs.append((sequence["digits"], said))
    return {**scores(pairs), "window_s": window_s, "hop_s": hop_s, "min_run": min_run}


def scores(pairs: list[tuple[list[str], list[str]]]) -> dict[str, float]:
    """Of (digits said, digits read) pairs: exact-sequence rate, digit error rate (edit distance /
    digits) and how often the count of digits was wrong."""
    return {
        "sequences": len(pairs),
        "exact": sum(truth == said for truth, said in pairs) / len(pairs),
        "digit_error_rate": sum(edit_distance(t, s) for t, s in pairs) / sum(len(t) for t, _ in pairs),
        "wrong_count": sum(len(truth) != len(said) for truth, said in pairs) / len(pairs),
    }


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
        if pairs:
            report[name] = scores(pairs)
    report["ms_per_recording"] = {
        "segment_and_features": 1000 * featurise_s / len(sequences),
        "model": 1000 * model_s / len(sequences),
    }
    report["mean_seconds"] = float(np.mean([len(s["waveform"]) / RATE for s in sequences]))
    report["examples"] = [
        {"truth": " ".join(t), "said": " ".join(s)} for t, s in (results["noisy"] + results["clean"])[:0:-25]
    ]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--sequences", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "digits")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--without-pauses", action="store_true", help="digits butted together: segmentation against a sliding window"
    )
    args = parser.parse_args()
    sequences = build_sequences(
        args.data_dir, split=args.split, count=args.sequences, seed=args.seed, pauses=not args.without_pauses
    )
    report = evaluate(sequences, args.model)
    if args.without_pauses:
        report["sliding_window"] = sliding_window(sequences, args.model)
        for name, figures in (("segment", report["all"]), ("sliding window", report["sliding_window"])):
            print(
                f"without pauses, {figures['sequences']} sequences, {name:14s}: exact {100 * figures['exact']:5.1f}%, "
                f"digit error rate {100 * figures['digit_error_rate']:5.1f}%"
            )
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return
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
