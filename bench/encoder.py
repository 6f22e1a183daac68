"""A head on Whisper's frozen encoder against our CNN from scratch, in the same run.

    .venv/bin/python bench/encoder.py [--json bench/results-encoder-DATE.json] [--figure docs/few-examples.png]
                                      [--skip-few] [--skip-cost] [--skip-padding]

(a) Few examples: each trained on 1, 5, 10, 20 and all training recordings of each class (drawn
    seeded from the training subset, the same draw for both), scored on the test subset: FSDD's
    official test split, ESC-10's fold 4. The CNN with the bundled models' settings, the head with
    the defaults of ``audio-maas train --encoder``; both with their augmentation, neither with
    synthetic voices or ``unknown``, so that the two see the same recordings. A figure.
(b) Cost through the service: the bundled CNN and the encoder model of each task served together;
    ``hey`` sends one test clip at concurrency 1; CPU of the transformer and the predictor (from
    /proc) per clip, p50, and each model directory's size on disk.
(c) The clip's own length against 30 s of padding: the same head (no augmentation) trained on the
    encoder's outputs either way, pooled over the clip's own frames; accuracy on the test subset
    and the encoder's CPU per clip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.features.spec import FeatureSpec  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from audio_maas.training.augment import sound_augment_settings  # noqa: E402
from audio_maas.training.card import ENCODER_CONTEXT_FILE, write_model_card  # noqa: E402
from audio_maas.training.config import TrainConfig  # noqa: E402
from audio_maas.training.dataset import Utterance, load_dataset, select_split  # noqa: E402
from audio_maas.training.encoder import EncoderFeatures, build_head, encoder_spec, pool  # noqa: E402
from audio_maas.training.evaluate import evaluate  # noqa: E402
from audio_maas.training.featurise import featurise  # noqa: E402
from audio_maas.training.train import train  # noqa: E402
from bench.serving import binary_body, cpu_seconds, hey  # noqa: E402
from bench.soak import server_pid  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
CACHE = REPO / "build"
COUNTS = (1, 5, 10, 20, None)
"""Training recordings a class; None: all."""


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    data_dir: Path
    cnn: TrainConfig
    served: tuple[str, str]
    """The bundled CNN and the encoder model, under ``models/`` or ``build/pretrained/``."""


def tasks() -> list[Task]:
    digits_cnn = TrainConfig(cnn_filters=(16, 32, 64, 128), batch_size=128, learning_rate=0.003, epochs=15,
                             synthetic_takes=0)  # fmt: skip
    sounds_spec = FeatureSpec.read(REPO / "models" / "sounds")
    sounds_cnn = TrainConfig(epochs=30, batch_size=32, augment_copies=4, spec=sounds_spec,
                             augment=sound_augment_settings(sounds_spec.clip_s))  # fmt: skip
    return [
        Task("FSDD", SHARED / "fsdd", digits_cnn, ("digits", "digits-whisper")),
        Task("ESC-10", SHARED / "esc10", sounds_cnn, ("sounds", "sounds-whisper")),
    ]


def head_config(cnn: TrainConfig) -> TrainConfig:
    """``audio-maas train --encoder``'s defaults for the task: the CNN's clip and augmentation."""
    return TrainConfig(encoder="whisper-tiny.en", spec=encoder_spec(cnn.spec), augment=cnn.augment,
                       augment_copies=cnn.augment_copies, synthetic_takes=0)  # fmt: skip


def drawn(utterances: list[Utterance], per_class: int | None, seed: int = 0) -> list[Utterance]:
    if per_class is None:
        return utterances
    rng = random.Random(seed)
    chosen = []
    for label in sorted({u.label for u in utterances}):
        members = [u for u in utterances if u.label == label]
        chosen += rng.sample(members, min(per_class, len(members)))
    return chosen


def few_examples(task: Task, scratch: Path) -> dict[str, dict[str, float]]:
    dataset = load_dataset(task.data_dir)
    training = [u for u in select_split(dataset.utterances, "train") if u.subset == "train"]
    test = select_split(dataset.utterances, "test")
    results: dict[str, dict[str, float]] = {"cnn": {}, "encoder": {}}
    for count in COUNTS:
        subset = drawn(training, count)
        for kind, config in (("cnn", task.cnn), ("encoder", head_config(task.cnn))):
            model_dir = scratch / f"{task.name}-{kind}-{count}"
            started = time.perf_counter()
            train(config, train_set=subset, validation_set=[], model_dir=model_dir, labels=dataset.labels,
                  cache_dir=CACHE)  # fmt: skip
            accuracy = evaluate(model_dir, test)["accuracy"]
            results[kind][str(count or "all")] = accuracy
            print(f"(a) {task.name} {kind} {count or 'all'} a class ({len(subset)}): accuracy {accuracy:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return results


def plot(few: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(few), figsize=(5 * len(few), 4), sharey=True)
    for ax, (task, results) in zip(np.atleast_1d(axes), few.items(), strict=True):
        ticks = [str(c or "all") for c in COUNTS]
        for kind, label in (("encoder", "head on Whisper tiny.en's encoder"), ("cnn", "CNN from scratch")):
            ax.plot(ticks, [results[kind][t] for t in ticks], marker="o", label=label)
        ax.set(title=f"{task}: test subset", xlabel="training recordings a class", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("accuracy")
    np.atleast_1d(axes)[0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def cost(tasks_: list[Task], requests: int) -> dict[str, Any]:
    """Each task's two models in one service, one clip at a time."""
    models = {name: (REPO / "models" / name if (REPO / "models" / name / "saved_model.pb").is_file()
                     else REPO / "build" / "pretrained" / name) for task in tasks_ for name in task.served}  # fmt: skip
    settings = ServiceSettings(http_port=18380, predictor_http_port=18385)
    flags = [flag for path in models.values() for flag in ("--model", str(path))]
    serve = subprocess.Popen(
        [sys.executable, "-m", "audio_maas.cli", "serve", *flags, "--http-port", str(settings.http_port),
         "--predictor-port", str(settings.predictor_http_port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    from audio_maas.client.check import wait_ready

    figures: dict[str, Any] = {}
    try:
        urls = [f"{settings.url}/v2/models/{name}/ready" for name in models]
        if wait_ready(urls, timeout_s=300, stop=lambda: serve.poll() is not None):
            raise SystemExit("the service did not start")
        pids = {name: server_pid(name, port) for name, port in
                (("transformer", settings.http_port), ("predictor", settings.predictor_http_port))}  # fmt: skip
        with tempfile.TemporaryDirectory() as scratch:
            for task in tasks_:
                clip = select_split(load_dataset(task.data_dir).utterances, "test")[0].data
                body, headers = binary_body(clip, Path(scratch) / "body")
                for name in task.served:
                    url = f"{settings.url}/v2/models/{name}/infer"
                    subprocess.run(["hey", "-n", "8", "-c", "1", "-m", "POST", "-D", str(body), *headers, url],
                                   check=True, capture_output=True)  # fmt: skip
                    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
                    level: dict[str, Any] = hey(url, body, headers, requests=requests, concurrency=1)
                    for k, pid in pids.items():
                        level[f"{k}_cpu_ms_per_clip"] = 1000 * (cpu_seconds(pid) - before[k]) / requests
                    level["cpu_ms_per_clip"] = level["transformer_cpu_ms_per_clip"] + level["predictor_cpu_ms_per_clip"]
                    level["size_mib"] = sum(p.stat().st_size for p in models[name].rglob("*") if p.is_file()) / 2**20
                    figures[name] = level
                    print(
                        f"(b) {name}: p50 {1000 * level['p50_s']:.1f} ms, CPU {level['cpu_ms_per_clip']:.1f} ms a "
                        f"clip (transformer {level['transformer_cpu_ms_per_clip']:.1f}, predictor "
                        f"{level['predictor_cpu_ms_per_clip']:.1f}), {level['size_mib']:.1f} MiB",
                        flush=True,
                    )
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    for task in tasks_:
        cnn, encoder = (figures[name]["cpu_ms_per_clip"] for name in task.served)
        figures[f"{task.name}_cpu_ratio_encoder_to_cnn"] = encoder / cnn
        print(f"(b) {task.name}: the encoder model costs {encoder / cnn:.1f}x the CNN's CPU a clip")
    return figures


def padding(task: Task) -> dict[str, Any]:
    """The head on the clip's own length against 30 s of padding, without augmentation."""
    import keras
    import tensorflow as tf

    from audio_maas.pretrained.whisper import WINDOW_SAMPLES

    dataset = load_dataset(task.data_dir)
    spec = encoder_spec(task.cnn.spec)
    training = select_split(dataset.utterances, "train")
    test = select_split(dataset.utterances, "test")
    encoder = EncoderFeatures("whisper-tiny.en", cache_dir=CACHE).load()
    frames = -(-spec.clip_samples // 320)

    @tf.function(reduce_retracing=True)
    def pooled(clips: tf.Tensor, padded: bool) -> tf.Tensor:
        if padded:
            clips = tf.pad(clips, [[0, 0], [0, WINDOW_SAMPLES - spec.clip_samples]])
        return pool(encoder.encode(clips)[:, :frames])

    results: dict[str, Any] = {}
    for padded in (False, True):
        inputs = {}
        started = time.process_time()
        for side, utterances in (("train", training), ("test", test)):
            clips = featurise(utterances, spec)[:, :, 0]
            inputs[side] = np.concatenate([pooled(tf.constant(clips[i : i + 8]), padded).numpy()
                                           for i in range(0, len(clips), 8)])  # fmt: skip
        cpu_ms = 1000 * (time.process_time() - started) / (len(training) + len(test))
        keras.utils.set_random_seed(0)
        head = build_head(train_features=inputs["train"], n_classes=len(dataset.labels))
        head.compile(optimizer=keras.optimizers.AdamW(2e-3), loss="sparse_categorical_crossentropy")
        y = {side: np.array([dataset.labels.index(u.label) for u in us]) for side, us in
             (("train", training), ("test", test))}  # fmt: skip
        head.fit(inputs["train"], y["train"], batch_size=64, epochs=30, verbose=0)
        accuracy = float((head.predict(inputs["test"], verbose=0).argmax(axis=1) == y["test"]).mean())
        key = "padded_30s" if padded else "own_length"
        results[key] = {"accuracy": accuracy, "cpu_ms_per_clip_featurise_and_encode": cpu_ms}
        print(f"(c) {task.name} {key}: accuracy {accuracy:.4f}, {cpu_ms:.0f} ms CPU a clip", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "few-examples.png")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--skip-few", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-padding", action="store_true")
    parser.add_argument(
        "--record", action="store_true", help="write (c) into each bundled encoder model and render its card again"
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    figures: dict[str, Any] = {"machine": f"{os.cpu_count()} CPU cores"}
    if args.json and args.json.is_file():  # parts run apart (--skip-...) gather in one file
        figures = {**json.loads(args.json.read_text()), **figures}
    if not args.skip_few:
        with tempfile.TemporaryDirectory() as scratch:
            figures["few_examples"] = {task.name: few_examples(task, Path(scratch)) for task in tasks()}
        plot(figures["few_examples"], args.figure)
    if not args.skip_cost:
        figures["cost"] = cost(tasks(), args.requests)
    if not args.skip_padding:
        figures["padding"] = {task.name: padding(task) for task in tasks()}
        if args.record:
            for task in tasks():
                bundled = REPO / "models" / task.served[1]
                source = f"bench/encoder.py, {time.strftime('%Y-%m-%d')}, {figures['machine']}"
                context = {"source": source, **figures["padding"][task.name]}
                (bundled / ENCODER_CONTEXT_FILE).write_text(json.dumps(context, indent=2) + "\n")
                write_model_card(bundled)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
