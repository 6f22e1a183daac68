"""Export a trained Keras model as a self-describing SavedModel directory, then verify it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY
from audio_maas.protocol.model_dir import read_labels, write_labels
from audio_maas.savedmodel.load import load_serving_function

__all__ = ["export_model"]


def export_model(
    *, model: keras.Model, spec: FeatureSpec, labels: list[str], model_dir: Path, check_features: np.ndarray
) -> None:
    """Write ``model`` with the serving signature of ``audio_maas.protocol.contract``, its spec and labels.

    Then reload what was written and check that it answers ``check_features`` (float32
    ``[N, frames, bins]``) as the in-memory model does; raise ``RuntimeError`` if not.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(features, training=False)}

    archive.add_endpoint(
        name=SIGNATURE_KEY,
        fn=serve,
        input_signature=[tf.TensorSpec([None, *spec.feature_shape], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(model_dir), verbose=False)
    spec.write(model_dir)
    write_labels(model_dir, labels)
    _verify(model=model, spec=spec, labels=labels, model_dir=model_dir, check_features=check_features)


def _verify(
    *, model: keras.Model, spec: FeatureSpec, labels: list[str], model_dir: Path, check_features: np.ndarray
) -> None:
    problems = []
    if FeatureSpec.read(model_dir) != spec:
        problems.append("feature spec does not read back equal")
    if read_labels(model_dir) != labels:
        problems.append("labels do not read back equal")
    try:
        serve = load_serving_function(model_dir)
    except RuntimeError as error:
        raise RuntimeError(f"export to {model_dir} failed verification: {error}") from None
    inputs = serve.structured_input_signature[1]
    if tuple(inputs[INPUT_NAME].shape[1:]) != spec.feature_shape:
        problems.append(f"serving input is {inputs}, expected {INPUT_NAME} [None, {spec.feature_shape}]")
    else:
        exported = serve(**{INPUT_NAME: tf.constant(check_features)})[OUTPUT_NAME].numpy()
        in_memory = model.predict(check_features, verbose=0)
        if exported.shape != (len(check_features), len(labels)):
            problems.append(f"output shape {exported.shape}, expected {(len(check_features), len(labels))}")
        elif not np.allclose(exported, in_memory, atol=1e-5):
            problems.append(
                f"exported outputs differ from the trained model by {np.abs(exported - in_memory).max():.2g}"
            )
    if problems:
        raise RuntimeError(f"export to {model_dir} failed verification: " + "; ".join(problems))
