"""A model directory, as export writes it and both servers read it: a TensorFlow SavedModel whose
serving signature (``audio_maas.protocol.contract``) maps ``features`` to ``probabilities``, with
these files beside ``saved_model.pb``:

- ``FEATURE_SPEC_FILE``: the front end's settings (``audio_maas.features.spec.FeatureSpec``);
  or, for a model we did not train, ``INTERFACE_FILE``: its input windows and how its outputs
  are read (``audio_maas.features.interface``), and any float32 outputs by name;
- ``LABELS_FILE``: one class name per line, in output order;
- ``MODEL_CARD_FILE``, ``METRICS_FILE`` and ``TRAINING_FILE``: what it was trained on and how well it does.

A model repository is a directory of them, each served under its folder's name.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = [
    "FEATURE_SPEC_FILE",
    "INTERFACE_FILE",
    "LABELS_FILE",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "MODEL_NAME_PATTERN",
    "TRAINING_FILE",
    "model_directories",
    "model_fingerprint",
    "read_labels",
    "storage_model_dir",
    "write_labels",
]

FEATURE_SPEC_FILE = "feature_spec.json"
INTERFACE_FILE = "interface.json"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
TRAINING_FILE = "training.json"
MODEL_CARD_FILE = "MODEL_CARD.md"

MODEL_NAME_PATTERN = r"[A-Za-z0-9._-]+"
"""What a model (or version) name may be: it stands in URL paths, ``/v2/models/{name}/infer``."""


def model_fingerprint(model_dir: Path) -> str:
    """What the transformer and the predictor of one model must agree on, hashed: the feature spec
    or interface (what the input means) and the labels (what each output means). Two containers
    fetching one storageUri at different times, or two revisions paired during a rollout, can
    disagree on either with the same tensor shapes; comparing this tells."""
    digest = hashlib.sha256()
    recipe = INTERFACE_FILE if (model_dir / INTERFACE_FILE).is_file() else FEATURE_SPEC_FILE
    for name in (recipe, LABELS_FILE):
        digest.update((model_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def write_labels(model_dir: Path, labels: list[str]) -> None:
    (model_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


def read_labels(model_dir: Path) -> list[str]:
    path = model_dir / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a model directory must carry its label names")
    labels = path.read_text(encoding="utf-8").splitlines()
    if not labels or any(not label for label in labels):
        raise ValueError(f"{path} must hold one non-empty label per line")
    return labels


def model_directories(repository: Path) -> dict[str, Path]:
    """A model repository's models, name -> directory: each subdirectory holding a SavedModel is
    a model served under the subdirectory's name, as Triton and MLServer read a repository."""
    if not repository.is_dir():
        raise FileNotFoundError(f"model repository {repository} is not a directory")
    models = {path.name: path for path in sorted(repository.iterdir()) if (path / "saved_model.pb").is_file()}
    for name in models:
        if not re.fullmatch(MODEL_NAME_PATTERN, name):
            raise ValueError(
                f"model directory {repository / name}: '{name}' is not a model name ({MODEL_NAME_PATTERN})"
            )
    if not models:
        raise FileNotFoundError(f"model repository {repository} holds no model directory (with saved_model.pb)")
    return models


def storage_model_dir() -> Path:
    """Where the model is: KServe's storage initializer downloads ``storageUri`` to /mnt/models;
    a local ``STORAGE_URI`` path (as when running outside the cluster) is used as it is."""
    uri = os.environ.get("STORAGE_URI", "")
    return Path(uri) if uri.startswith("/") else Path("/mnt/models")
