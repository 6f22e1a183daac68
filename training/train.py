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

from serving.contract import METRICS_FILE, TRAINING_FILE
from training.augment import augmented_features
from training.card import write_model_card
from training.config import TrainConfig
from training.dataset import DIGIT_LABELS, Dataset, Utterance, featurize, select_split
from training.evaluate import evaluate
from training.export import export_model
from training.models import build_model
from training.synthetic import HELD_OUT_VARIANTS, TRAIN_VARIANTS, synthetic_digits

__all__ = ["leave_one_speaker_out", "train", "train_and_report"]

log = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    *,
    train_set: list[Utterance],
    validation_set: list[Utterance],
    model_dir: Path,
    labels: list[str] = DIGIT_LABELS,
) -> dict[str, Any]:
    """Fit ``config.arch`` on ``train_set`` (+ synthetic voices when ``labels`` are the digits),
    export to ``model_dir``.

    Returns what ``training.json`` records: config, data counts, history and seconds taken.
    """
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    synthetic = (
        synthetic_digits(variants=TRAIN_VARIANTS, takes=config.synthetic_takes, seed=config.seed)
        if config.synthetic_takes and labels == DIGIT_LABELS
        else []
    )
    sources = train_set + synthetic
    log.info(
        "featurising %d utterances (%d synthetic) with %d augmented copies each",
        len(sources),
        len(synthetic),
        config.augment_copies,
    )
    clean = featurize(sources, config.spec, workers=config.workers)
    augmented = augmented_features(
        [u.data for u in sources],
        spec=config.spec,
        settings=config.augment,
        copies=config.augment_copies,
        noise_speech=[u.data for u in train_set],
        seed=config.seed,
        workers=config.workers,
    )
    classes = np.array([labels.index(u.label) for u in sources])
    x_train = np.concatenate([clean, augmented])
    y_train = np.concatenate([classes, np.repeat(classes, config.augment_copies)])
    x_val = featurize(validation_set, config.spec, workers=config.workers)
    y_val = np.array([labels.index(u.label) for u in validation_set])
    featurised = time.perf_counter()
    log.info("%d training examples ready in %.0f s", len(x_train), featurised - started)

    model = build_model(arch=config.arch, train_features=x_train, n_classes=len(labels))
    steps = config.epochs * -(-len(x_train) // config.batch_size)
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
    model_dir.mkdir(parents=True, exist_ok=True)
    export_model(
        model=model,
        spec=config.spec,
        labels=labels,
        model_dir=model_dir,
        check_features=x_val[:32] if len(x_val) else x_train[:32],
    )
    info = {
        "config": dataclasses.asdict(config),
        "parameters": model.count_params(),
        "examples": {
            "recordings": len(train_set),
            "synthetic_utterances": len(synthetic),
            "augmented_copies": config.augment_copies,
            "total": len(x_train),
            "validation": len(x_val),
        },
        "speakers": sorted({u.speaker for u in train_set}),
        "history": {key: [float(v) for v in values] for key, values in fit.history.items()},
        "seconds": {"featurize": round(featurised - started, 1), "total": round(time.perf_counter() - started, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {_gpus()} GPUs",
    }
    (model_dir / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def train_and_report(
    config: TrainConfig, *, dataset: Dataset, model_dir: Path, exclude_speakers: tuple[str, ...] = ()
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
    )
    info["dataset"] = {
        "root": str(dataset.root),
        "layout": dataset.layout,
        "split": dataset.split_rule,
        "recordings": len(dataset.utterances),
        "sources": len({u.speaker for u in dataset.utterances}),
        "skipped": dataset.skipped,
    }
    (model_dir / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
    test = select_split(dataset.utterances, "test", exclude_speakers=exclude_speakers)
    metrics = evaluate(model_dir, test, report_dir=model_dir / "report")
    metrics["split"] = "FSDD official test split (index 0-4)" if dataset.layout == "fsdd" else "the test subset"
    if info["examples"]["synthetic_utterances"]:
        unseen = synthetic_digits(variants=HELD_OUT_VARIANTS, takes=1, seed=config.seed + 1)
        metrics["synthetic_held_out_voices_accuracy"] = evaluate(model_dir, unseen)["accuracy"]
    (model_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(model_dir)
    return {**info, "metrics": metrics}


def leave_one_speaker_out(config: TrainConfig, *, fsdd: list[Utterance], work_dir: Path) -> dict[str, Any]:
    """Train once per FSDD speaker without that speaker (all indices of the others but the
    validation ones), and test on all of the held-out speaker's recordings."""
    accuracy = {}
    for speaker in sorted({u.speaker for u in fsdd}):
        others = [u for u in fsdd if u.speaker != speaker]
        log.info("leave-one-speaker-out: holding out %s", speaker)
        train(
            config,
            train_set=[u for u in others if u.subset != "validation"],
            validation_set=[u for u in others if u.subset == "validation"],
            model_dir=work_dir / speaker,
        )
        accuracy[speaker] = evaluate(work_dir / speaker, [u for u in fsdd if u.speaker == speaker])["accuracy"]
        log.info("leave-one-speaker-out: %s accuracy %.4f", speaker, accuracy[speaker])
    return {
        "config": dataclasses.asdict(config),
        "accuracy": accuracy,
        "mean_accuracy": float(np.mean(list(accuracy.values()))),
    }


def _gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))
