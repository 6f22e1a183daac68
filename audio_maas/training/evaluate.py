"""Evaluate an exported model directory: metrics, then a report folder with plots."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from sklearn import metrics as skm

from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME
from audio_maas.protocol.model_dir import TRAINING_FILE, read_labels
from audio_maas.savedmodel.load import load_serving_function
from audio_maas.training.dataset import LONGEST_RECORDING_S, UNKNOWN_LABEL, Utterance
from audio_maas.training.featurise import featurise

__all__ = ["compute_metrics", "evaluate", "labelled_predictions", "predict", "write_explanations", "write_report"]


def predict(model_dir: Path, features: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class probabilities float32 ``[N, classes]`` of the exported model for ``[N, frames, bins]``."""
    serve = load_serving_function(model_dir)
    batches = [
        serve(**{INPUT_NAME: tf.constant(features[i : i + batch_size])})[OUTPUT_NAME].numpy()
        for i in range(0, len(features), batch_size)
    ]
    return np.concatenate(batches)


def compute_metrics(*, y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (macro and per class), one-vs-rest ROC-AUC per class and the
    confusion matrix.

    ``y_true``: int ``[N]`` class ids; ``probabilities``: float ``[N, classes]``.
    """
    classes = np.arange(len(labels))
    y_pred = probabilities.argmax(axis=1)
    per_precision, per_recall, per_f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average=None, zero_division=0
    )
    one_hot = y_true[:, None] == classes[None, :]
    roc_auc = {
        label: float(skm.roc_auc_score(one_hot[:, c], probabilities[:, c]))
        if 0 < one_hot[:, c].sum() < len(y_true)
        else None
        for c, label in enumerate(labels)
    }
    present = [value for value in roc_auc.values() if value is not None]
    named = y_true != list(labels).index(UNKNOWN_LABEL) if UNKNOWN_LABEL in labels else None
    if named is not None and not named.any():
        named = None
    return {
        "n": len(y_true),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # With ``unknown``: accuracy on the recordings of the other classes alone (FSDD's test split
        # for digits), the figure comparable with a model that has no ``unknown``.
        **(
            {"accuracy_named_classes": float(skm.accuracy_score(y_true[named], y_pred[named]))}
            if named is not None
            else {}
        ),
        "precision_macro": float(per_precision.mean()),  # macro: the unweighted mean over classes
        "recall_macro": float(per_recall.mean()),
        "f1_macro": float(per_f1.mean()),
        "per_class": {
            label: {
                "precision": float(per_precision[c]),
                "recall": float(per_recall[c]),
                "f1": float(per_f1[c]),
                "n": int(support[c]),
            }
            for c, label in enumerate(labels)
        },
        "roc_auc": roc_auc,
        "roc_auc_macro": float(np.mean(present)) if present else None,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "labels": list(labels),
    }


def labelled_predictions(model_dir: Path, utterances: Sequence[Utterance]) -> tuple[np.ndarray, np.ndarray]:
    """The class ids of ``utterances``' labels ``[N]`` and the model's probabilities ``[N, classes]``
    for them, featurised with the model's own spec."""
    labels = read_labels(model_dir)
    unknown = sorted({u.label for u in utterances} - set(labels))
    if unknown:
        raise ValueError(f"utterances carry labels the model does not know: {unknown}")
    y_true = np.array([labels.index(u.label) for u in utterances])
    return y_true, predict(model_dir, featurise(utterances, FeatureSpec.read(model_dir)))


def evaluate(model_dir: Path, utterances: Sequence[Utterance], *, report_dir: Path | None = None) -> dict[str, Any]:
    """Featurise ``utterances`` with the model's own spec, predict, score; write a report if asked."""
    y_true, probabilities = labelled_predictions(model_dir, utterances)
    result = compute_metrics(y_true=y_true, probabilities=probabilities, labels=read_labels(model_dir))
    if report_dir is not None:
        training = model_dir / TRAINING_FILE
        history = json.loads(training.read_text()).get("history") if training.is_file() else None
        write_report(report_dir, result, y_true=y_true, probabilities=probabilities, history=history)
        if FeatureSpec.read(model_dir).feature != "waveform":  # saliency is over log-mel features
            write_explanations(
                report_dir / "explanations", model_dir, utterances, y_true=y_true, probabilities=probabilities
            )
    return result


def write_explanations(
    out_dir: Path,
    model_dir: Path,
    utterances: Sequence[Utterance],
    *,
    y_true: np.ndarray,
    probabilities: np.ndarray,
) -> list[Path]:
    """One explanation figure per class (``audio_maas.training.figures``): the clip of that class the model
    is surest of, right or wrong, with its saliency as the service answers it (``audio_maas.savedmodel.explain``)."""
    from audio_maas.features.audio import decode
    from audio_maas.features.frontend import FrontEnd
    from audio_maas.savedmodel.explain import explainer
    from audio_maas.training.figures import draw_explanation

    labels = read_labels(model_dir)
    front_end = FrontEnd(FeatureSpec.read(model_dir))
    explain = explainer(load_serving_function(model_dir))
    written = []
    for c, label in enumerate(labels):
        members = np.flatnonzero(y_true == c)
        if not members.size:
            continue
        chosen = members[probabilities[members, c].argmax()]
        waveform, sample_rate = decode(data=utterances[chosen].data, max_duration_s=LONGEST_RECORDING_S)
        features, frame_s = front_end.features_and_frame_times(waveform=waveform, sample_rate=sample_rate)
        answered, saliency = (t.numpy()[0] for t in explain(tf.constant(features[None])))
        out = out_dir / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}.png"
        draw_explanation(
            waveform=waveform.mean(axis=1),
            sample_rate=sample_rate,
            probabilities=answered,
            saliency=saliency,
            frame_s=frame_s,
            class_names=labels,
            title=f"{utterances[chosen].name} (labelled {label}), model {model_dir.name}",
            out=out,
        )
        written.append(out)
    return written


def write_report(
    report_dir: Path,
    result: dict[str, Any],
    *,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    history: dict[str, list[float]] | None,
) -> None:
    """``metrics.json``, ``confusion_matrix.png``, ``roc_curves.png`` and, given a history, ``training_curves.png``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    labels = result["labels"]

    figure, axes = plt.subplots(figsize=(6, 5))
    skm.ConfusionMatrixDisplay(np.array(result["confusion_matrix"]), display_labels=labels).plot(
        ax=axes, colorbar=False, cmap="Blues"
    )
    axes.set_title(f"Confusion matrix (accuracy {result['accuracy']:.2%}, n={result['n']})")
    figure.tight_layout()
    figure.savefig(report_dir / "confusion_matrix.png", dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 5))
    for c, label in enumerate(labels):
        if result["roc_auc"][label] is not None:
            fpr, tpr, _ = skm.roc_curve(y_true == c, probabilities[:, c])
            axes.plot(fpr, tpr, label=f"{label} (AUC {result['roc_auc'][label]:.4f})")
    axes.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one class against the rest")
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    figure.savefig(report_dir / "roc_curves.png", dpi=100)
    plt.close(figure)

    if history:
        figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
        for key, values in history.items():
            target = accuracy_axes if "accuracy" in key else loss_axes
            target.plot(range(1, len(values) + 1), values, label=key)
        loss_axes.set(xlabel="epoch", title="loss")
        accuracy_axes.set(xlabel="epoch", title="accuracy")
        loss_axes.legend()
        accuracy_axes.legend()
        figure.tight_layout()
        figure.savefig(report_dir / "training_curves.png", dpi=100)
        plt.close(figure)
