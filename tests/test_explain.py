"""Explanations (outputs ``saliency`` and ``saliency_frame_s``): integrated gradients against a
step-by-step computation, frame times against where sound really is, then through the real
service with tritonclient over REST and gRPC."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import tensorflow as tf
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.savedmodel.explain import STEPS, explainer
from audio_maas.savedmodel.load import load_serving_function
from audio_maas.serving.settings import ServiceSettings
from audio_maas.training.dataset import load_fsdd, select_split
from tests.conftest import BUNDLED_LABELS, BUNDLED_MODEL, outputs_as_served, rounding_bound, tone


@pytest.fixture(scope="module")
def clips(fsdd_dir: Path) -> list[bytes]:
    return [u.data for u in select_split(load_fsdd(fsdd_dir), "test")[::60]]


def test_integrated_gradients_in_one_batched_call_equal_the_step_by_step_sum(
    front_end: FrontEnd, clips: list[bytes]
) -> None:
    signature = load_serving_function(BUNDLED_MODEL)
    features = np.stack([front_end.from_bytes(data=data, max_duration_s=60) for data in clips])
    probabilities, saliency = (t.numpy() for t in explainer(signature)(tf.constant(features)))
    predicted = probabilities.argmax(axis=1)
    baseline = features.min(axis=(1, 2), keepdims=True)
    expected = np.zeros_like(features)
    for alpha in (np.arange(STEPS) + 0.5) / STEPS:
        point = tf.constant((baseline + alpha * (features - baseline)).astype(np.float32))
        with tf.GradientTape() as tape:
            tape.watch(point)
            chosen = tf.gather(signature(features=point)["probabilities"], predicted, axis=1, batch_dims=1)
        expected += tape.gradient(chosen, point).numpy() / STEPS
    expected *= features - baseline
    # One batch of steps x clips against one batch per step: the kernels sum in other orders.
    np.testing.assert_allclose(saliency, expected, atol=rounding_bound(BUNDLED_MODEL) * np.abs(expected).max())
    assert saliency.shape == features.shape and (saliency.sum(axis=(1, 2)) > 0).all()  # evidence for the answer


@pytest.mark.parametrize(("sample_rate", "seconds", "burst_s"), [(8000, 1.6, (0.9, 1.2)), (16000, 0.8, (0.2, 0.4))])
def test_frame_times_are_seconds_of_the_audio_sent(
    front_end: FrontEnd, sample_rate: int, seconds: float, burst_s: tuple[float, float]
) -> None:
    """A tone burst in silence: the loud frames' times fall on the burst, whether the clip was
    trimmed, padded or resampled on its way to the model."""
    waveform = np.zeros(int(seconds * sample_rate), np.float32)
    start, end = (int(s * sample_rate) for s in burst_s)
    burst = tone(frequency_hz=700, seconds=burst_s[1] - burst_s[0], sample_rate=sample_rate)
    waveform[start:end] = burst[: end - start]
    features, times = front_end.features_and_frame_times(waveform=waveform, sample_rate=sample_rate)
    np.testing.assert_array_equal(features, front_end.from_waveform(waveform=waveform, sample_rate=sample_rate))
    loud = features.max(axis=1) > features.max() - 20
    assert burst_s[0] - 0.02 <= times[loud].min() and times[loud].max() <= burst_s[1] + 0.02
    np.testing.assert_allclose(np.diff(times), front_end.spec.hop_length / front_end.spec.sample_rate, rtol=1e-4)


def _explained(url: str, files: list[bytes], **kwargs: object) -> httpclient.InferResult:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    audio = httpclient.InferInput("audio", [len(files)], "BYTES")
    audio.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    names = ("label", "probabilities", "saliency", "saliency_frame_s")
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in names]
    return client.infer("digits", [audio], outputs=outputs, **kwargs)  # type: ignore[arg-type]


def test_the_service_explains_when_asked_and_answers_plainly_otherwise(
    service: ServiceSettings, clips: list[bytes], spec: FeatureSpec
) -> None:
    answer = _explained(service.url, clips)
    frames, bins = spec.feature_shape
    assert answer.as_numpy("saliency").shape == (len(clips), frames, bins)
    assert answer.as_numpy("saliency_frame_s").shape == (len(clips), frames)
    plain = httpclient.InferenceServerClient(service.url.removeprefix("http://"))
    audio = httpclient.InferInput("audio", [len(clips)], "BYTES")
    audio.set_data_from_numpy(np.array(clips, dtype=object), binary_data=True)
    plain_answer = plain.infer("digits", [audio])
    assert [o["name"] for o in plain_answer.get_response()["outputs"]] == ["label", "class_id", "probabilities"]
    # Explained and plain rows go to the predictor in different calls (batch compositions, even
    # functions): their float32 sums may differ in the last places, so they are compared decoded.
    np.testing.assert_array_equal(answer.as_numpy("label"), plain_answer.as_numpy("label"))
    assert answer.as_numpy("probabilities").shape == (len(clips), len(BUNDLED_LABELS))
    rows = zip(answer.as_numpy("saliency"), answer.as_numpy("saliency_frame_s"), clips, strict=True)
    for saliency, times, data in rows:  # the most evidence is in the audio, not in the clip's padding
        assert 0 <= times[saliency.sum(axis=1).argmax()] <= soundfile.info(io.BytesIO(data)).duration


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
audio = grpcclient.InferInput("audio", [1], "BYTES")
audio.set_data_from_numpy(np.array([open(sys.argv[2], "rb").read()], dtype=object))
outputs = [grpcclient.InferRequestedOutput(name) for name in ("saliency", "saliency_frame_s")]
result = client.infer("digits", [audio], outputs=outputs)
print(json.dumps({name: list(result.as_numpy(name).shape) for name in ("saliency", "saliency_frame_s")}))
try:
    client.infer("digits", [audio], outputs=outputs, parameters={"segment": True})
except Exception as error:
    print(json.dumps({"status": error.status(), "message": error.message()}))
"""


def test_grpc_clients_get_explanations_and_a_clear_refusal_with_segment(
    service: ServiceSettings, clips: list[bytes], spec: FeatureSpec, tmp_path: Path
) -> None:
    """tritonclient.grpc in its own process (its protobuf symbols clash with KServe's)."""
    path = tmp_path / "clip.wav"
    path.write_bytes(clips[0])
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, f"127.0.0.1:{service.grpc_port}", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    shapes, refusal = (json.loads(line) for line in completed.stdout.splitlines())
    assert shapes == {"saliency": [1, *spec.feature_shape], "saliency_frame_s": [1, spec.feature_shape[0]]}
    assert refusal["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "explains whole elements" in refusal["message"]


def test_saliency_with_segment_is_a_400_and_the_service_goes_on(service: ServiceSettings, clips: list[bytes]) -> None:
    with pytest.raises(InferenceServerException, match="'saliency' explains whole elements") as refused:
        _explained(service.url, clips[:1], parameters={"segment": True})
    assert refused.value.status() == "400"
    assert _explained(service.url, clips[:1]).as_numpy("saliency") is not None


def test_the_predictor_explains_features_sent_to_it_directly(
    service: ServiceSettings, clips: list[bytes], tmp_path: Path
) -> None:
    """Two rows of features, one request: the saliency is the package's integrated gradients of
    those two rows in one call, bit for bit, as the predictor's thread pools compute it."""
    front_end = FrontEnd(FeatureSpec.read(BUNDLED_MODEL))
    features = np.stack([front_end.from_bytes(data=data, max_duration_s=60) for data in clips[:2]])
    client = httpclient.InferenceServerClient(f"127.0.0.1:{service.predictor_http_port}")
    tensor = httpclient.InferInput("features", list(features.shape), "FP32")
    tensor.set_data_from_numpy(features, binary_data=True)
    outputs = [httpclient.InferRequestedOutput("saliency", binary_data=True)]
    answer = client.infer("digits", [tensor], outputs=outputs)
    assert answer.as_numpy("saliency").shape == features.shape
    assert answer.as_numpy("probabilities") is None  # only what was asked for
    expected = outputs_as_served(BUNDLED_MODEL, features, tmp_path, explained=True)["saliency"]
    np.testing.assert_array_equal(answer.as_numpy("saliency"), expected)


def test_explain_command_draws_the_answer_and_its_saliency(
    service: ServiceSettings, fsdd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from audio_maas.cli import main

    path, out = fsdd_dir / "recordings" / "7_theo_2.wav", tmp_path / "why.png"
    assert main(["explain", str(path), "--url", service.url, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: 7; explanation drawn in {out}"
    with Image.open(out) as figure:
        assert figure.size == (900, 750)
