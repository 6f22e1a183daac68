"""What export, both servers and every client agree on: the model directory and the tensors.

A model directory is a TensorFlow SavedModel whose serving signature ``SIGNATURE_KEY`` maps
``INPUT_NAME`` (float32 features ``[batch, frames, bins]``) to ``OUTPUT_NAME`` (float32 class
probabilities ``[batch, classes]``), with these files beside ``saved_model.pb``:

- ``FEATURE_SPEC_FILE``: the front end's settings (``audio_maas.features.spec.FeatureSpec``);
  or, for a model we did not train, ``INTERFACE_FILE``: its input windows and how its outputs
  are read (``audio_maas.features.interface``), and any float32 outputs by name;
- ``LABELS_FILE``: one class name per line, in output order;
- ``MODEL_CARD_FILE``, ``METRICS_FILE`` and ``TRAINING_FILE``: what it was trained on and how well it does.

The transformer's own tensors (audio in; label, class id and probabilities out) are named here
too, so that clients need not import the server. This module imports nothing heavy: every
container, the client and training use it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal

__all__ = [
    "AUDIO_INPUT",
    "AUTH_TOKEN_ENV",
    "CLASS_ID_OUTPUT",
    "CONFIDENCE_OUTPUT",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PREDICTOR_HTTP_PORT",
    "DEFAULT_PREDICTOR_PROTOCOL",
    "DEFAULT_URL",
    "END_S_OUTPUT",
    "FEATURE_SPEC_FILE",
    "FINAL_RESPONSE_PARAMETER",
    "FREQUENCY_OUTPUT",
    "INPUT_NAME",
    "INTERFACE_FILE",
    "LABELS_FILE",
    "LABEL_OUTPUT",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "MODEL_FINGERPRINT_PARAMETER",
    "MODEL_NAME_PATTERN",
    "NOTES_OUTPUT",
    "OUTPUT_NAME",
    "PARTIAL_PARAMETER",
    "PARTIAL_RESPONSE_PARAMETER",
    "SALIENCY_FRAME_S_OUTPUT",
    "SALIENCY_OUTPUT",
    "SAMPLE_RATE_PARAMETER",
    "SEGMENTS_OUTPUT",
    "SEQUENCE_OUTPUT",
    "SIGNATURE_KEY",
    "START_S_OUTPUT",
    "TAG_TIMELINE_OUTPUT",
    "TIME_OUTPUT",
    "TOP_TAGS_OUTPUT",
    "TRAINING_FILE",
    "WAVEFORM_INPUT",
    "model_directories",
    "model_fingerprint",
    "note_name",
    "read_labels",
    "storage_model_dir",
    "write_labels",
]

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "features"
"""The predictor's input: FP32 ``[N, frames, bins]``."""
OUTPUT_NAME = "probabilities"
"""The predictor's output, and the transformer's: FP32 ``[N, classes]``."""

AUDIO_INPUT = "audio"
"""The transformer's input, BYTES ``[N]``: each element one encoded audio file."""
WAVEFORM_INPUT = "waveform"
"""The transformer's other input, FP32 ``[N, samples]`` at the request parameter ``SAMPLE_RATE_PARAMETER``."""
SAMPLE_RATE_PARAMETER = "sample_rate"
LABEL_OUTPUT = "label"
"""BYTES ``[N]``: the most probable class's name."""
CLASS_ID_OUTPUT = "class_id"
"""INT64 ``[N]``: the most probable class's index into ``LABELS_FILE``."""
SALIENCY_OUTPUT = "saliency"
"""FP32 ``[N, frames, bins]``, only when asked for by name, from the predictor and the transformer:
each feature's evidence for the predicted class (``audio_maas.savedmodel.explain``), on the model's own grid."""
SALIENCY_FRAME_S_OUTPUT = "saliency_frame_s"
"""FP32 ``[N, frames]``, only when asked for: the time of each frame's centre, in seconds of the
audio the client sent (frames in padding get times outside it)."""
SEQUENCE_OUTPUT = "sequence"
"""BYTES ``[N]``, with the request parameter ``segment``: each element's segment labels in time
order, separated by single spaces."""
SEGMENTS_OUTPUT = "segments"
"""BYTES ``[N]``, with ``segment``: each element's segments as a JSON array of ``{"start_s",
"end_s", "label", "probability"}`` in time order, not overlapping."""
NOTES_OUTPUT = "notes"
"""BYTES ``[N]``, from a note transcriber (``interface.json``'s reader ``notes``): each element's
notes as a JSON array of ``{"start_s", "end_s", "midi", "name", "confidence"}`` in time order."""
FREQUENCY_OUTPUT = "frequency_hz"
"""FP32 ``[N, frames]``, from a pitch tracker (reader ``pitch``): the pitch of each frame."""
CONFIDENCE_OUTPUT = "confidence"
"""FP32 ``[N, frames]``, beside ``FREQUENCY_OUTPUT``: how sure the model is that the frame has that pitch."""
TIME_OUTPUT = "time_s"
"""FP32 ``[N, frames]``: where each frame of a frame-wise output lies, in seconds of the element
(for a tagger, where each window starts). Elements of different lengths are padded with NaN."""
TOP_TAGS_OUTPUT = "top_tags"
"""BYTES ``[N]``, from a tagger (output kind ``tags``): each element's best tags over its whole
length, as a JSON array of ``{"tag", "score"}``, best first."""
TAG_TIMELINE_OUTPUT = "tag_timeline"
"""BYTES ``[N]``, beside ``TOP_TAGS_OUTPUT``: each window's best tags, as a JSON array of
``{"start_s", "end_s", "tags": [{"tag", "score"}]}`` in time order."""
START_S_OUTPUT = "start_s"
"""FP32 ``[1]``, in each answer of a live stream (gRPC ``ModelStreamInfer``): where the sound
begins, in seconds since the recording's first piece."""
END_S_OUTPUT = "end_s"
"""FP32 ``[1]``, beside ``START_S_OUTPUT``: where the sound ends."""
FINAL_RESPONSE_PARAMETER = "triton_final_response"
"""Response parameter, true in the answer (without outputs) that ends a live recording, as Triton flags it."""
PARTIAL_PARAMETER = "partial_ms"
"""Request parameter of a live stream: also answer the sound going on, as heard so far, every this
many ms of the recording; the sound's own answer follows when it ends."""
PARTIAL_RESPONSE_PARAMETER = "partial"
"""Response parameter, true in such an answer of a sound still going on."""
MODEL_FINGERPRINT_PARAMETER = "audio_maas_model"
"""Request parameter of every transformer-to-predictor call: the :func:`model_fingerprint` of the
transformer's model directory, which the predictor compares with its own. Other clients leave it out."""

FEATURE_SPEC_FILE = "feature_spec.json"
INTERFACE_FILE = "interface.json"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"
TRAINING_FILE = "training.json"
MODEL_CARD_FILE = "MODEL_CARD.md"

DEFAULT_MODEL_NAME = "digits"
"""The model a request names when its sender names none (``predict``, the chart, the servers)."""
DEFAULT_HTTP_PORT = 8080
"""The transformer's REST port, as KServe's container contract has it; gRPC is on the next port."""
DEFAULT_PREDICTOR_HTTP_PORT = 8085
"""The local predictor's REST port (``audio-maas serve``); gRPC is on the next port."""
DEFAULT_PREDICTOR_PROTOCOL: Literal["grpc-v2", "v2"] = "grpc-v2"
"""How the transformer calls the predictor unless told: gRPC (``grpc-v2``), or binary REST (``v2``)."""
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"
"""Where ``audio-maas serve`` answers on this machine."""

MODEL_NAME_PATTERN = r"[A-Za-z0-9._-]+"
"""What a model (or version) name may be: it stands in URL paths, ``/v2/models/{name}/infer``."""

AUTH_TOKEN_ENV = "AUDIO_MAAS_AUTH_TOKEN"
"""One variable for the whole local service: both servers check it, the transformer sends it
to the predictor, ``audio-maas predict`` sends it to the transformer."""


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


def note_name(midi: int) -> str:
    """MIDI note number -> scientific pitch name (69 -> A4), as ``NOTES_OUTPUT`` names notes."""
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[midi % 12]}{midi // 12 - 1}"


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
