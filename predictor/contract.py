"""The model directory contract shared by export (training), the transformer and the predictor.

A model directory is a TensorFlow SavedModel whose serving signature ``SIGNATURE_KEY`` maps
``INPUT_NAME`` (float32 features ``[batch, frames, bins]``) to ``OUTPUT_NAME`` (float32 class
probabilities ``[batch, classes]``), with these files beside ``saved_model.pb``:

- ``feature_spec.json``: the front end's settings (``transformer.frontend.FeatureSpec``);
- ``labels.txt``: one class name per line, in output order;
- ``MODEL_CARD.md`` and ``metrics.json``: what it was trained on and how well it does.

It also names the one environment variable of the local service's optional bearer token.
This module imports nothing heavy so every container, and the client, can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

AUTH_TOKEN_ENV = "AUDIO_MAAS_AUTH_TOKEN"
"""One variable for the whole local service: both servers check it, the transformer sends it
to the predictor, ``audio-maas predict`` sends it to the transformer."""

__all__ = [
    "AUTH_TOKEN_ENV",
    "INPUT_NAME",
    "LABELS_FILE",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "OUTPUT_NAME",
    "SIGNATURE_KEY",
    "TRAINING_FILE",
    "read_labels",
    "storage_model_dir",
    "write_labels",
]

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"

LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
TRAINING_FILE = "training.json"
MODEL_CARD_FILE = "MODEL_CARD.md"


def write_labels(model_dir: Path, labels: list[str]) -> None:
    (model_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels))


def read_labels(model_dir: Path) -> list[str]:
    path = model_dir / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a model directory must carry its label names")
    labels = path.read_text().splitlines()
    if not labels or any(not label for label in labels):
        raise ValueError(f"{path} must hold one non-empty label per line")
    return labels


def storage_model_dir() -> Path:
    """Where the model is: KServe's storage initializer downloads ``storageUri`` to /mnt/models;
    a local ``STORAGE_URI`` path (as when running outside the cluster) is used as it is."""
    uri = os.environ.get("STORAGE_URI", "")
    return Path(uri) if uri.startswith("/") else Path("/mnt/models")
