"""The model card: a Markdown page rendered from the figures a model directory records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from serving.contract import INPUT_NAME, METRICS_FILE, MODEL_CARD_FILE, OUTPUT_NAME, TRAINING_FILE, read_labels
from transformer.frontend import FeatureSpec

__all__ = ["LOSO_FILE", "confusion_matrix_lines", "write_model_card"]

LOSO_FILE = "loso.json"
"""Leave-one-speaker-out results, written by ``audio-maas loso --model DIR``."""


def write_model_card(model_dir: Path) -> None:
    """Render ``MODEL_CARD.md`` from the spec, labels, ``training.json``, ``metrics.json`` and ``loso.json``."""
    spec = FeatureSpec.read(model_dir)
    labels = read_labels(model_dir)
    training = _read(model_dir / TRAINING_FILE)
    metrics = _read(model_dir / METRICS_FILE)
    loso = _read(model_dir / LOSO_FILE)
    config = training["config"]
    dataset = training.get("dataset") or {"layout": "fsdd"}  # cards written before other layouts
    digits = dataset["layout"] == "fsdd"
    lines = [
        f"# Model card: {'spoken digits' if digits else model_dir.resolve().name}, {config['arch'].upper()}",
        "",
        "Classifies one spoken English digit (0-9) in a short recording."
        if digits
        else f"Classifies a recording as one of {len(labels)} classes: {', '.join(labels)}.",
        "",
        "## Interface",
        f"- TensorFlow SavedModel, signature `serving_default`: `{INPUT_NAME}` float32 "
        f"[batch, {spec.n_frames}, {spec.n_bins}] -> `{OUTPUT_NAME}` float32 [batch, {len(labels)}].",
        f"- Labels (`labels.txt`, output order): {', '.join(labels)}.",
        f"- Features (`feature_spec.json`): {spec.feature} at {spec.sample_rate} Hz, {spec.clip_s:g} s centred clip, "
        f"n_fft {spec.n_fft}, hop {spec.hop_length}, {spec.n_mels} mel bands {spec.fmin:g}-{spec.fmax:g} Hz, "
        f"band-pass {spec.band_pass_hz}, trim at {spec.trim_top_db} dB, RMS gain to {spec.target_rms_dbfs} dBFS. "
        "Compute them with `transformer.frontend.FrontEnd`; the model normalises them itself.",
        f"- {training['parameters']:,} parameters.",
        "",
        "## Training data",
        *(_fsdd_data(training) if digits else _folder_data(dataset)),
        f"- {training['examples']['augmented_copies']} augmented copies of every recording: speed and pitch "
        "perturbation, vocal-tract-length perturbation, background noise (white, pink, brown, hum, babble) "
        "at 0-30 dB SNR, gain and time shift. "
        f"{training['examples']['total']:,} training examples in all.",
        f"- {config['epochs']} epochs, batch {config['batch_size']}, AdamW with cosine decay from "
        f"{config['learning_rate']}, seed {config['seed']}.",
        f"- Training took {training['seconds']['total']:.0f} s ({training['seconds']['featurize']:.0f} s of it "
        f"featurisation) on {training['machine']}.",
        "",
        f"## Evaluation: {metrics['split']}, n = {metrics['n']}",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| accuracy | {metrics['accuracy']:.4f} |",
        f"| precision (macro) | {metrics['precision_macro']:.4f} |",
        f"| recall (macro) | {metrics['recall_macro']:.4f} |",
        f"| F1 (macro) | {metrics['f1_macro']:.4f} |",
        f"| ROC-AUC (macro, one against rest) | {metrics['roc_auc_macro']:.4f} |",
    ]
    if "synthetic_held_out_voices_accuracy" in metrics:
        lines.append(f"| accuracy on held-out synthetic voices | {metrics['synthetic_held_out_voices_accuracy']:.4f} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", "", "```"]
    lines += confusion_matrix_lines(labels, metrics["confusion_matrix"])
    lines += ["```", "", "Plots: `report/confusion_matrix.png`, `report/roc_curves.png`, `report/training_curves.png`."]
    if loso:
        lines += [
            "",
            "## Leave-one-speaker-out (FSDD)",
            "",
            f"A {loso['config']['arch'].upper()} trained for {loso['config']['epochs']} epochs (otherwise as above) "
            "without one speaker, tested on all of that speaker's recordings: the fairer estimate for new voices, "
            "since the official split shares its speakers.",
            "",
            "| held-out speaker | accuracy |",
            "| --- | --- |",
        ]
        lines += [f"| {speaker} | {accuracy:.4f} |" for speaker, accuracy in loso["accuracy"].items()]
        lines.append(f"| **mean** | **{loso['mean_accuracy']:.4f}** |")
    lines += ["", "## Limits", *(_FSDD_LIMITS if digits else _folder_limits(spec, labels))]
    lines += [
        "",
        "## License",
        "Trained on FSDD, CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)."
        if digits
        else f"Trained on the recordings in `{dataset['root']}`, under their own licence, which audio-maas does "
        "not know: state it, and credit the recordings' authors, here.",
    ]
    (model_dir / MODEL_CARD_FILE).write_text("\n".join(lines) + "\n")


def _fsdd_data(training: dict[str, Any]) -> list[str]:
    return [
        "- [Free Spoken Digit Dataset](https://github.com/Jakobovski/free-spoken-digit-dataset) (FSDD), "
        f"by Zohar Jackson and contributors, licensed CC BY-SA 4.0: {len(training['speakers'])} speakers "
        f"({', '.join(training['speakers'])}), 8 kHz. Official split: index 0-4 is the test set; "
        "we train on the rest but index 5-9, on which we draw validation curves.",
        f"- {training['examples']['synthetic_utterances']} synthetic utterances from espeak-ng voice variants "
        "(female, male and other accents), to widen the voices the model hears.",
    ]


def _folder_data(dataset: dict[str, Any]) -> list[str]:
    skipped = dataset["skipped"]
    return [
        f"- {dataset['recordings']} recordings from `{dataset['root']}` (one folder per class), "
        f"{dataset['sources']} sources (speakers or source recordings). Split: {dataset['split']}.",
        *([f"- {len(skipped)} files could not be read and were left out: {'; '.join(skipped)}."] if skipped else []),
    ]


_FSDD_LIMITS = [
    "- FSDD holds six adult men. Women's, children's and other accents' voices are covered only by "
    "augmentation and synthetic speech; accuracy on real recordings of such voices has not been measured here.",
    "- One word per clip, about a second long; longer audio is cropped to its centre after silence trimming.",
    "- English digits only; anything else is still mapped to one of the ten labels.",
]


def _folder_limits(spec: FeatureSpec, labels: list[str]) -> list[str]:
    return [
        f"- One sound per clip: audio is trimmed of silence and centred in {spec.clip_s:g} s, longer audio cropped.",
        f"- Anything that is none of the {len(labels)} classes is still mapped to one of them.",
        "- Measured only on the test subset of the same folder: recordings made elsewhere may score lower.",
    ]


def confusion_matrix_lines(labels: list[str], matrix: list[list[int]]) -> list[str]:
    """A confusion matrix as aligned text rows, each led by its true label."""
    width = max(3, *(len(label) for label in labels))
    return [f"{label:>{width}} " + " ".join(f"{n:3d}" for n in row) for label, row in zip(labels, matrix, strict=True)]


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None
