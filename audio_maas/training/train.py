"""Train a sound classifier on a labelled folder (FSDD: plus synthetic voices), export and evaluate it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from audio_maas.protocol.model_dir import METRICS_FILE, TRAINING_FILE
from audio_maas.training.augment import augmented_features
from audio_maas.training.card import write_model_card
from audio_maas.training.config import TrainConfig
from audio_maas.training.dataset import (
    DIGIT_LABELS,
    UNKNOWN_LABEL,
    Dataset,
    Utterance,
    held_out_group,
    is_digits,
    select_split,
)
from audio_maas.training.encoder import EncoderFeatures, build_head, encoded_examples, export_encoder_model
from audio_maas.training.evaluate import evaluate
from audio_maas.training.export import export_model
from audio_maas.training.featurise import featurise
from audio_maas.training.models import build_model, shift_logit
from audio_maas.training.outside_voices import allison_digits
from audio_maas.training.synthetic import HELD_OUT_VARIANTS, TRAIN_VARIANTS, silences, synthetic_digits

__all__ = ["DEFAULT_CACHE_DIR", "cross_validate", "train", "train_and_report"]

log = logging.getLogger(__name__)

HEAD_STEPS = 1000
"""The fewest updates a head on an encoder gets: on a small folder its epochs rise to them (60
recordings and 3 augmented copies of each make 4 batches an epoch: 250 epochs, seconds of work)."""
DEFAULT_CACHE_DIR = Path("build")
"""Where an encoder's archive and its outputs for training are kept."""


def train(
    config: TrainConfig,
    *,
    train_set: list[Utterance],
    validation_set: list[Utterance],
    model_dir: Path,
    labels: list[str] = DIGIT_LABELS,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """Fit ``config.arch``, or a head on ``config.encoder`` (whose outputs are cached under
    ``cache_dir``), on ``train_set`` (+ synthetic voices when ``labels`` are the digits, with or
    without ``unknown``), export to ``model_dir``.

    Returns what ``training.json`` records: config, data counts, history and seconds taken.
    """
    if config.unknown_bias and UNKNOWN_LABEL not in labels:
        raise ValueError(f"an unknown bias needs the class {UNKNOWN_LABEL!r}: train with --unknown DIR")
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    synthetic = (
        synthetic_digits(variants=TRAIN_VARIANTS, takes=config.synthetic_takes, seed=config.seed)
        if config.synthetic_takes and is_digits(labels)
        else []
    )
    silent = (
        silences(config.spec, count=max(10, len(train_set) // 100), seed=config.seed) if UNKNOWN_LABEL in labels else []
    )
    sources = train_set + synthetic + silent
    log.info(
        "featurising %d utterances (%d synthetic) with %d augmented copies each",
        len(sources),
        len(synthetic),
        config.augment_copies,
    )
    classes = np.array([labels.index(u.label) for u in sources])
    y_train = np.concatenate([classes, np.repeat(classes, config.augment_copies)])
    y_val = np.array([labels.index(u.label) for u in validation_set])
    if config.encoder:
        encoder = EncoderFeatures(config.encoder, cache_dir=cache_dir)
        x_train = encoded_examples(
            encoder, sources, spec=config.spec, augment=config.augment, copies=config.augment_copies,
            noise_speech=train_set, seed=config.seed, workers=config.workers,
        )  # fmt: skip
        x_val = encoded_examples(encoder, validation_set, spec=config.spec, workers=config.workers)
        model = build_head(train_features=x_train, n_classes=len(labels))
    else:
        augmented = augmented_features(
            [u.data for u in sources],
            spec=config.spec,
            settings=config.augment,
            copies=config.augment_copies,
            noise_speech=[u.data for u in train_set],
            seed=config.seed,
            workers=config.workers,
        )
        x_train = np.concatenate([featurise(sources, config.spec, workers=config.workers), augmented])
        x_val = featurise(validation_set, config.spec, workers=config.workers)
        model = build_model(
            arch=config.arch, train_features=x_train, n_classes=len(labels), cnn_filters=config.cnn_filters
        )
    featurised = time.perf_counter()
    log.info("%d training examples ready in %.0f s", len(x_train), featurised - started)

    if config.encoder:  # a small folder's few batches an epoch would leave the head short of updates
        config = dataclasses.replace(config, epochs=max(config.epochs, -(-HEAD_STEPS // _batches(x_train, config))))
    steps = config.epochs * _batches(x_train, config)
    model.compile(
        optimizer=keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fit = model.fit(
        x_train,
        y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_val, y_val) if len(x_val) else None,
        shuffle=True,
        verbose=2,
    )
    if config.unknown_bias:
        shift_logit(model, labels.index(UNKNOWN_LABEL), config.unknown_bias)
    model_dir.mkdir(parents=True, exist_ok=True)
    check = featurise((validation_set or train_set)[:8], config.spec)
    if config.encoder:
        export_encoder_model(
            features=encoder, head=model, spec=config.spec, labels=labels, model_dir=model_dir, check_clips=check
        )
    else:
        export_model(model=model, spec=config.spec, labels=labels, model_dir=model_dir, check_features=check)
    info = {
        "config": dataclasses.asdict(config),
        "parameters": model.count_params(),
        "examples": {
            "recordings": len(train_set),
            "synthetic_utterances": len(synthetic),
            "silences": len(silent),
            "augmented_copies": config.augment_copies,
            "total": len(x_train),
            "validation": len(x_val),
        },
        # The named classes' speakers or sources; `unknown`'s sources are the model card's own list.
        "speakers": sorted({u.speaker for u in train_set if u.label != UNKNOWN_LABEL}),
        "history": {key: [float(v) for v in values] for key, values in fit.history.items()},
        "seconds": {"featurise": round(featurised - started, 1), "total": round(time.perf_counter() - started, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {_gpus()} GPUs",
    }
    if config.encoder:
        info["encoder_parameters"] = encoder.parameters()
    (model_dir / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def train_and_report(
    config: TrainConfig,
    *,
    dataset: Dataset,
    model_dir: Path,
    exclude_speakers: tuple[str, ...] = (),
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    """The ``audio-maas train`` job: train on the dataset's training subset, evaluate the export on
    its test subset (and, for digits, on held-out synthetic voices), and write metrics, report
    plots and model card."""
    train_split = select_split(dataset.utterances, "train", exclude_speakers=exclude_speakers)
    info = train(
        config,
        train_set=[u for u in train_split if u.subset == "train"],
        validation_set=[u for u in train_split if u.subset == "validation"],
        model_dir=model_dir,
        labels=dataset.labels,
        cache_dir=cache_dir,
    )
    info["dataset"] = {
        "root": str(dataset.root),
        "layout": dataset.layout,
        "split": dataset.split_rule,
        "recordings": len(dataset.utterances),
        "sources": len({u.speaker for u in dataset.utterances}),
        "skipped": dataset.skipped,
        "unknown_from": list(dataset.unknown_from),
        "unknown_per_class": dataset.unknown_per_class,
        "unknown_recordings": sum(u.label == UNKNOWN_LABEL for u in dataset.utterances),
    }
    (model_dir / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
    test = select_split(dataset.utterances, "test", exclude_speakers=exclude_speakers)
    metrics = evaluate(model_dir, test, report_dir=model_dir / "report")
    metrics["split"] = "FSDD official test split (index 0-4)" if dataset.layout == "fsdd" else "the test subset"
    if dataset.unknown_from:
        metrics["split"] += ", and `unknown`'s recordings from held-out speakers and folds"
    if info["examples"]["synthetic_utterances"]:
        unseen = synthetic_digits(variants=HELD_OUT_VARIANTS, takes=1, seed=config.seed + 1)
        metrics["synthetic_held_out_voices_accuracy"] = evaluate(model_dir, unseen)["accuracy"]
    if is_digits(dataset.labels) and (voice := allison_digits()):
        metrics["outside_voice_accuracy"] = evaluate(model_dir, voice)["accuracy"]
    (model_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(model_dir)
    return {**info, "metrics": metrics}


def cross_validate(
    config: TrainConfig, *, dataset: Dataset, work_dir: Path, cache_dir: Path = DEFAULT_CACHE_DIR
) -> dict[str, Any]:
    """Leave one group out: each fold where file names give folds, else each speaker
    (``held_out_group``). Each round trains on every other recording (``unknown``'s included)
    but the validation ones, and tests on all of the held-out group's recordings."""
    named = [u for u in dataset.utterances if u.label != UNKNOWN_LABEL]
    groups = sorted({held_out_group(u) for u in named})
    if len(groups) > 20:
        raise ValueError(f"{dataset.root} has {len(groups)} speakers or sources and no folds: too many to leave out")
    accuracy = {}
    for group in groups:
        others = [u for u in dataset.utterances if held_out_group(u) != group]
        log.info("cross-validation: holding out %s", group)
        train(
            config,
            train_set=[u for u in others if u.subset != "validation"],
            validation_set=[u for u in others if u.subset == "validation"],
            model_dir=work_dir / group,
            labels=dataset.labels,
            cache_dir=cache_dir,
        )
        accuracy[group] = evaluate(work_dir / group, [u for u in named if held_out_group(u) == group])["accuracy"]
        log.info("cross-validation: %s accuracy %.4f", group, accuracy[group])
    return {
        "held_out": "speaker" if held_out_group(named[0]) == named[0].speaker else "fold",
        "config": dataclasses.asdict(config),
        "accuracy": accuracy,
        "mean_accuracy": float(np.mean(list(accuracy.values()))),
        "std_accuracy": float(np.std(list(accuracy.values()))),
    }


def _batches(examples: np.ndarray, config: TrainConfig) -> int:
    return -(-len(examples) // config.batch_size)


def _gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))
