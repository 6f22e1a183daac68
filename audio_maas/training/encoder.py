"""A classifier on a frozen pretrained encoder: a small head trained on the encoder's outputs,
exported with the encoder as one SavedModel that takes the conditioned clip itself
(``FeatureSpec.feature == "waveform"``), so the transformer sends a waveform and the encoder's
own front end (Whisper's log-mel) runs in the graph.

The encoder runs on the clip's own length (``WhisperEncoder``: the first positional encodings,
not 30 s of padding), and its last layer is pooled over time, mean and maximum side by side.
Those pooled outputs are what the head trains on: computed once per recording (and per
augmented copy) and cached under ``cache_dir``, keyed by what makes them, so a retrain of the
head skips the encoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from audio_maas.features.spec import FeatureSpec
from audio_maas.pretrained.whisper import SAMPLE_RATE, WhisperEncoder
from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY
from audio_maas.protocol.model_dir import TRAINING_FILE, read_labels, write_labels
from audio_maas.savedmodel.load import load_serving_function
from audio_maas.training.augment import AugmentSettings, augmented_features
from audio_maas.training.config import ENCODERS
from audio_maas.training.dataset import Utterance
from audio_maas.training.featurise import featurise

__all__ = [
    "HEAD_FILE",
    "EncoderFeatures",
    "assemble",
    "build_head",
    "bundle",
    "encoded_examples",
    "encoder_spec",
    "example_key",
    "export_encoder_model",
]

log = logging.getLogger(__name__)

HEAD_FILE = "head.keras"
"""The trained head alone, beside the SavedModel that holds it with the encoder."""
BATCH = 32
"""Clips encoded at once: a 5 s clip's attention scores are 1.5 MB a row."""


def encoder_spec(spec: FeatureSpec) -> FeatureSpec:
    """``spec``'s conditioning (clip length, band-pass, trim, gain) at the encoder's rate, its
    features the conditioned clip; 25 ms frames every 10 ms frame the silence trim."""
    band = spec.band_pass_hz and (spec.band_pass_hz[0], min(spec.band_pass_hz[1], 0.95 * SAMPLE_RATE / 2))
    return replace(
        spec, sample_rate=SAMPLE_RATE, feature="waveform", n_fft=400, hop_length=160, n_mels=80,
        fmin=0.0, fmax=SAMPLE_RATE / 2, band_pass_hz=band, pre_emphasis=0.0,
    )  # fmt: skip


class EncoderFeatures:
    """The pooled outputs float32 ``[2 d]`` of one encoder for clips, cached by key."""

    def __init__(self, name: str, *, cache_dir: Path) -> None:
        from audio_maas.pretrained.archives import ARCHIVES

        if name not in ENCODERS:
            raise ValueError(f"no encoder {name!r}: choose from {', '.join(ENCODERS)}")
        self.name = name
        self.archive = ARCHIVES[ENCODERS[name]]
        self.archives_dir = cache_dir / "pretrained-archives"
        self.features_dir = cache_dir / "encoder-features" / name / self.archive.sha256[:16]
        self._encoder: WhisperEncoder | None = None
        self._pooled: Callable[[tf.Tensor], tf.Tensor] | None = None

    def unpacked(self) -> Path:
        """The encoder's pinned archive, unpacked (fetched into ``cache_dir`` unless there)."""
        from audio_maas.pretrained.archives import fetch

        return fetch(self.archive, self.archives_dir)

    def load(self) -> WhisperEncoder:
        """The encoder, read once."""
        from audio_maas.pretrained.convert import read_whisper

        if self._encoder is None:
            variables, mel_filters, _ = read_whisper(self.unpacked())
            self._encoder = WhisperEncoder(variables, mel_filters=mel_filters)
        return self._encoder

    def parameters(self) -> int:
        """The encoder's parameter count."""
        return sum(int(np.prod(w.shape)) for w in self.load().weights.values())

    def pooled(self, clips: np.ndarray) -> np.ndarray:
        """``[N, samples, 1]`` conditioned clips -> float32 ``[N, 2 d]``, uncached."""
        if self._pooled is None:
            encoder = self.load()
            self._pooled = tf.function(lambda clips: pool(encoder.encode(clips)), reduce_retracing=True)
        return np.concatenate(
            [self._pooled(tf.constant(clips[i : i + BATCH, :, 0])).numpy() for i in range(0, len(clips), BATCH)]
        )

    def cached(self, keys: Sequence[str], clips_of: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """The pooled outputs of the clips named by ``keys`` (each a digest of what makes its
        clip): read from the cache, or made by ``clips_of(indices)`` for those not there yet,
        encoded and written."""
        if not keys:
            return np.empty((0, 0), np.float32)
        self.features_dir.mkdir(parents=True, exist_ok=True)
        paths = [self.features_dir / f"{key}.npy" for key in keys]
        missing = [i for i, path in enumerate(paths) if not path.is_file()]
        log.info("%s: %d of %d examples cached", self.name, len(keys) - len(missing), len(keys))
        if missing:
            for i, row in zip(missing, self.pooled(clips_of(missing)), strict=True):
                partial = paths[i].with_suffix(".partial.npy")  # a run stopped mid-write leaves no torn entry
                np.save(partial, row)
                partial.replace(paths[i])
        return np.stack([np.load(path) for path in paths])


def pool(outputs: tf.Tensor) -> tf.Tensor:
    """``[N, frames, d]`` -> ``[N, 2 d]``: mean and maximum over time."""
    return tf.concat([tf.reduce_mean(outputs, axis=1), tf.reduce_max(outputs, axis=1)], axis=-1)


def example_key(data: bytes, *recipe: object) -> str:
    """A digest of a recording's bytes and everything else that makes its clip."""
    digest = hashlib.sha256(data)
    digest.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def build_head(*, train_features: np.ndarray, n_classes: int, hidden: int = 256) -> keras.Model:
    """Normalisation adapted on ``train_features`` ``[N, 2 d]``, one hidden layer, softmax."""
    inputs = keras.Input(shape=train_features.shape[1:], name=INPUT_NAME)
    normalize = keras.layers.Normalization(axis=-1, name="normalize")
    normalize.adapt(train_features)
    x = keras.layers.Dropout(0.2)(normalize(inputs))
    x = keras.layers.Dense(hidden, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="encoder_head")


class _EncoderClassifier(tf.Module):
    """Conditioned clips ``[N, samples, 1]`` -> class probabilities: encoder, pooling, head."""

    def __init__(self, encoder: tf.Module, head: keras.Model) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def __call__(self, clips: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: self.head(pool(self.encoder.encode(clips[:, :, 0])), training=False)}


def export_encoder_model(
    *,
    features: EncoderFeatures,
    head: keras.Model,
    spec: FeatureSpec,
    labels: list[str],
    model_dir: Path,
    check_clips: np.ndarray,
) -> None:
    """Write encoder and head as one SavedModel with the serving signature of
    ``audio_maas.protocol.contract`` (``features`` float32 ``[N, samples, 1]``), its spec, labels,
    the encoder's licence and the head alone (``HEAD_FILE``: what a bundled model commits); then
    reload it and check that it answers ``check_clips`` as the encoder and the in-memory head do,
    raising ``RuntimeError`` if not."""
    from audio_maas.pretrained.convert import copy_licence

    module = _EncoderClassifier(features.load(), head)
    signature = tf.TensorSpec([None, *spec.feature_shape], tf.float32, name=INPUT_NAME)
    module.serve = tf.function(module.__call__, input_signature=[signature])
    tf.saved_model.save(module, str(model_dir), signatures={SIGNATURE_KEY: module.serve})
    spec.write(model_dir)
    write_labels(model_dir, labels)
    copy_licence(features.unpacked(), model_dir)
    weights_only = keras.Model.from_config(head.get_config())  # not compiled: no optimizer state in the file
    weights_only.set_weights(head.get_weights())
    weights_only.save(model_dir / HEAD_FILE)
    problems = []
    if FeatureSpec.read(model_dir) != spec or read_labels(model_dir) != labels:
        problems.append("feature spec or labels do not read back equal")
    exported = load_serving_function(model_dir)(**{INPUT_NAME: tf.constant(check_clips)})[OUTPUT_NAME].numpy()
    in_memory = head.predict(features.pooled(check_clips), verbose=0)
    if exported.shape != in_memory.shape or not np.allclose(exported, in_memory, atol=1e-5):
        problems.append(f"exported outputs {exported.shape} differ from encoder and head's {in_memory.shape}")
    if problems:
        raise RuntimeError(f"export to {model_dir} failed verification: " + "; ".join(problems))


def encoded_examples(
    features: EncoderFeatures,
    utterances: Sequence[Utterance],
    *,
    spec: FeatureSpec,
    augment: AugmentSettings | None = None,
    copies: int = 0,
    noise_speech: Sequence[Utterance] = (),
    seed: int = 0,
    workers: int = 1,
) -> np.ndarray:
    """The pooled outputs of each utterance's clip, then of ``copies`` augmented copies of each
    (copy ``c`` of utterance ``i`` at row ``len(utterances) + i * copies + c``), cached.

    An augmented copy is drawn from a generator seeded with the recording's own digest, not its
    place in the list, so that the same recording gets the same copies in every training set it
    is part of (cross-validation's folds share them when their noise speech is the same).
    """
    clean = features.cached(
        [example_key(u.data, spec) for u in utterances],
        lambda indices: featurise([utterances[i] for i in indices], spec, workers=workers),
    )
    if not copies:
        return clean
    noise = hashlib.sha256(b"".join(hashlib.sha256(u.data).digest() for u in noise_speech)).hexdigest()
    ids = [int(example_key(u.data)[:8], 16) for u in utterances]

    def clips_of(indices: list[int]) -> np.ndarray:
        wanted = sorted({i // copies for i in indices})
        made = augmented_features(
            [utterances[j].data for j in wanted], spec=spec, settings=augment or AugmentSettings(), copies=copies,
            noise_speech=[u.data for u in noise_speech], seed=seed, workers=workers, ids=[ids[j] for j in wanted],
        )  # fmt: skip
        rows = {j * copies + c: made[k * copies + c] for k, j in enumerate(wanted) for c in range(copies)}
        return np.stack([rows[i] for i in indices])

    keys = [example_key(u.data, spec, augment, seed, copy, noise) for u in utterances for copy in range(copies)]
    return np.concatenate([clean, features.cached(keys, clips_of)])


def bundle(model_dir: Path, out: Path) -> None:
    """What a bundled encoder model commits: ``model_dir`` without the encoder's weights (its
    SavedModel and licence), which :func:`assemble` puts back from the pinned archive."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns(*_FROM_THE_ARCHIVE))


def assemble(bundled: Path, out: Path, *, cache_dir: Path) -> bool:
    """The servable model of a :func:`bundle` in ``out``: its head and the encoder from the
    pinned archive, exported and verified as training exports them. False, doing nothing,
    where ``out`` holds that bundle's assembly already."""
    files = [path.relative_to(bundled) for path in bundled.rglob("*") if path.is_file()]
    if (out / "saved_model.pb").is_file() and all(
        (out / name).is_file() and (out / name).read_bytes() == (bundled / name).read_bytes() for name in files
    ):
        return False
    training = json.loads((bundled / TRAINING_FILE).read_text())
    features = EncoderFeatures(training["config"]["encoder"], cache_dir=cache_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundled, out)
    spec = FeatureSpec.read(bundled)
    check = np.random.default_rng(0).standard_normal([4, *spec.feature_shape]).astype(np.float32) * 0.1
    export_encoder_model(
        features=features, head=keras.models.load_model(bundled / HEAD_FILE), spec=spec,
        labels=read_labels(bundled), model_dir=out, check_clips=check,
    )  # fmt: skip
    return True


_FROM_THE_ARCHIVE = ("saved_model.pb", "variables", "assets", "fingerprint.pb", "LICENSE", "NOTICE")


def main(argv: list[str] | None = None) -> None:
    """``python -m audio_maas.training.encoder bundle MODEL_DIR BUNDLED``: what to commit of a
    trained encoder model; ``... assemble --out DIR BUNDLED ...``: each bundled encoder model made
    servable in ``DIR/<its name>`` (``make import-pretrained``)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bundling = commands.add_parser("bundle", help="copy a trained encoder model without the encoder")
    bundling.add_argument("model_dir", type=Path)
    bundling.add_argument("bundled", type=Path)
    assembling = commands.add_parser("assemble", help="put the encoder back into bundled models")
    assembling.add_argument("bundled", nargs="+", type=Path, help="a bundled head's directory (models/NAME)")
    assembling.add_argument("--out", type=Path, required=True, help="where the servable models go")
    assembling.add_argument("--cache", type=Path, default=Path("build"), help="where the encoder's archive is kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "bundle":
        bundle(args.model_dir, args.bundled)
        return
    for bundled in args.bundled:
        made = assemble(bundled, args.out / bundled.name, cache_dir=args.cache)
        log.info("%s: %s%s", bundled.name, args.out / bundled.name, "" if made else " (assembled before)")


if __name__ == "__main__":
    main()
