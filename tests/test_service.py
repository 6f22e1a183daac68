"""The service end to end: both real KServe processes on loopback, called with tritonclient
(a V2 client we did not write), over REST with binary data, REST with JSON, and gRPC."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from audio_maas.cli import main
from audio_maas.features.spec import FeatureSpec
from audio_maas.serving.settings import ServiceSettings
from audio_maas.training.dataset import Utterance
from tests.conftest import BUNDLED_LABELS, BUNDLED_MODEL, assert_distributions, encode, tone


def _infer_files(url: str, files: list[bytes]) -> tuple[list[str], np.ndarray]:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    audio = httpclient.InferInput("audio", [len(files)], "BYTES")
    audio.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in ("label", "probabilities")]
    result = client.infer("digits", [audio], outputs=outputs)
    return [label.decode() for label in result.as_numpy("label")], result.as_numpy("probabilities")


def test_whole_test_split_through_the_service_scores_what_evaluate_scores(
    service: ServiceSettings, test_split: list[Utterance], offline_probabilities: np.ndarray
) -> None:
    """300 files in 30 concurrent requests of 10: every answer equals the exported model's own."""
    batches = [test_split[i : i + 10] for i in range(0, len(test_split), 10)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda batch: _infer_files(service.url, [u.data for u in batch]), batches))
    served_labels = [label for labels, _ in answers for label in labels]
    served_probabilities = np.concatenate([probabilities for _, probabilities in answers])

    # Compared decoded: the predictor batches concurrent requests as they come, and other batch
    # sizes and thread pools than the offline call's may round the float32 sums differently.
    assert served_labels == [BUNDLED_LABELS[i] for i in offline_probabilities.argmax(axis=1)]
    assert_distributions(served_probabilities)
    accuracy = np.mean([label == u.label for label, u in zip(served_labels, test_split, strict=True)])
    recorded = json.loads((BUNDLED_MODEL / "metrics.json").read_text())
    assert accuracy == recorded.get("accuracy_named_classes", recorded["accuracy"])  # FSDD's split: the digits alone


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
files = [open(path, "rb").read() for path in sys.argv[2:]]
audio = grpcclient.InferInput("audio", [len(files)], "BYTES")
audio.set_data_from_numpy(np.array(files, dtype=object))
result = client.infer("digits", [audio])
print(json.dumps({
    "label": [label.decode() for label in result.as_numpy("label")],
    "class_id_dtype": str(result.as_numpy("class_id").dtype),
    "probabilities": result.as_numpy("probabilities").tolist(),
}))
"""


def test_grpc_path_gives_the_same_answers(
    service: ServiceSettings, test_split: list[Utterance], fsdd_dir: Path
) -> None:
    """tritonclient.grpc runs in its own process: its protobuf module and KServe's (imported by
    other tests here) register the same ``inference.*`` symbols and cannot share one process."""
    paths = [str(fsdd_dir / "recordings" / u.name) for u in test_split[:12]]
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, f"127.0.0.1:{service.grpc_port}", *paths],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result = json.loads(completed.stdout)
    rest_labels, rest_probabilities = _infer_files(service.url, [u.data for u in test_split[:12]])
    assert result["label"] == rest_labels
    # The same request of 12 files, the same features and predictor batch: the same sums, bit for bit.
    np.testing.assert_array_equal(np.array(result["probabilities"], np.float32), rest_probabilities)
    assert result["class_id_dtype"] == "int64"


def test_base64_json_and_waveform_inputs_answer_like_binary(
    service: ServiceSettings, test_split: list[Utterance]
) -> None:
    utterance = test_split[7]
    body = {
        "inputs": [
            {"name": "audio", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(utterance.data).decode()]}
        ]
    }
    answer = requests.post(f"{service.url}/v2/models/digits/infer", json=body, timeout=30).json()
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert outputs["label"]["data"] == [utterance.label]
    assert outputs["class_id"] == {
        "name": "class_id",
        "shape": [1],
        "datatype": "INT64",
        "data": [int(utterance.label)],
    }  # and no "parameters": null, which the protocol's schema does not allow
    assert outputs["probabilities"]["shape"] == [1, len(BUNDLED_LABELS)]

    waveform = tone(frequency_hz=300, seconds=0.5, sample_rate=16000)
    client = httpclient.InferenceServerClient(service.url.removeprefix("http://"))
    samples = httpclient.InferInput("waveform", [1, len(waveform)], "FP32")
    samples.set_data_from_numpy(waveform[None, :], binary_data=True)
    by_waveform = client.infer("digits", [samples], parameters={"sample_rate": 16000}).as_numpy("probabilities")
    _, by_file = _infer_files(service.url, [encode(waveform, sample_rate=16000, format="WAV", subtype="FLOAT")])
    np.testing.assert_array_equal(by_waveform, by_file)  # float WAV decodes to the very samples: the same sums


def test_metadata_reports_the_real_tensors(service: ServiceSettings) -> None:
    transformer = requests.get(f"{service.url}/v2/models/digits", timeout=5).json()
    assert transformer["inputs"] == [
        {"name": "audio", "datatype": "BYTES", "shape": [-1]},
        {"name": "waveform", "datatype": "FP32", "shape": [-1, -1]},
    ]
    frames, bins = FeatureSpec.read(BUNDLED_MODEL).feature_shape
    assert transformer["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "class_id", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(BUNDLED_LABELS)]},
        {"name": "sequence", "datatype": "BYTES", "shape": [-1]},  # with `segment`
        {"name": "segments", "datatype": "BYTES", "shape": [-1]},
        {"name": "saliency", "datatype": "FP32", "shape": [-1, frames, bins]},  # when asked for
        {"name": "saliency_frame_s", "datatype": "FP32", "shape": [-1, frames]},
    ]
    predictor = requests.get(f"http://127.0.0.1:{service.predictor_http_port}/v2/models/digits", timeout=5).json()
    assert predictor["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, frames, bins]}]
    assert predictor["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(BUNDLED_LABELS)]},
        {"name": "saliency", "datatype": "FP32", "shape": [-1, frames, bins]},
    ]


def _post(service: ServiceSettings, body: object) -> requests.Response:
    return requests.post(f"{service.url}/v2/models/digits/infer", json=body, timeout=30)


def _audio(*elements: bytes) -> dict:
    return {
        "inputs": [
            {
                "name": "audio",
                "shape": [len(elements)],
                "datatype": "BYTES",
                "data": [base64.b64encode(e).decode() for e in elements],
            }
        ]
    }


def test_malformed_json_is_a_v2_400(service: ServiceSettings) -> None:
    response = requests.post(
        f"{service.url}/v2/models/digits/infer",
        data=b"{not json",
        headers={"content-type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400 and "error" in response.json()


def test_oversized_body_is_refused_with_413_before_it_is_read(service: ServiceSettings) -> None:
    response = requests.post(
        f"{service.url}/v2/models/digits/infer",
        data=b"0" * (33 * 2**20),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json() == {"error": f"request body is over the limit of {32 * 2**20} bytes"}


def test_unknown_model_is_404(service: ServiceSettings, test_split: list[Utterance]) -> None:
    response = requests.post(f"{service.url}/v2/models/nope/infer", json=_audio(test_split[0].data), timeout=5)
    assert response.status_code == 404 and "nope" in response.json()["error"]


def test_versioned_paths_answer_for_the_served_version_and_404_for_others(
    service: ServiceSettings, test_split: list[Utterance]
) -> None:
    """KServe 0.21 answers 501 to every versioned path; the protocol's paths all carry a version."""
    base = f"{service.url}/v2/models/digits"
    assert requests.get(base, timeout=5).json()["versions"] == ["1"]
    assert requests.get(f"{base}/versions/1", timeout=5).json()["name"] == "digits"
    assert requests.get(f"{base}/versions/1/ready", timeout=5).status_code == 200
    answer = requests.post(f"{base}/versions/1/infer", json=_audio(test_split[0].data), timeout=30)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["name"] == "label"
    for path in ("/versions/2", "/versions/2/ready", "/versions/2/infer"):
        response = requests.request("POST" if path.endswith("infer") else "GET", f"{base}{path}", timeout=5)
        assert response.status_code == 404
        assert response.json() == {"error": "model 'digits' has no version '2'; this server has version '1'"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/v2/no/such/route", None, 404, "Not Found"),
        ("GET", "/v2/models/digits/infer", None, 405, "Method Not Allowed"),
        (
            "POST",
            "/v2/models/digits/infer",
            b"\x80",
            400,
            "malformed request: body: Invalid JSON: expected value at line 1 column 1",
        ),
        ("POST", "/v2/models/digits/infer", b"{}", 400, "malformed request: body.inputs: Field required"),
    ],
)
def test_framework_errors_answer_the_v2_error_body(
    service: ServiceSettings, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    """FastAPI's own answers ({"detail": ...}) become V2's {"error": ...}, and the infer route's
    (KServe's endpoint on a plain route, ``audio_maas.kserve.patches.finish_app``) say what is
    wrong with a JSON body."""
    response = requests.request(
        method, f"{service.url}{path}", data=body, headers={"content-type": "application/json"}, timeout=5
    )
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_binary_bytes_from_tritonclient_are_not_utf8_decoded(service: ServiceSettings) -> None:
    """Regression: stock KServe 0.21 answers 500 here (it re-encodes binary BYTES as UTF-8)."""
    flac = encode(tone(frequency_hz=440, seconds=0.4, sample_rate=22050), sample_rate=22050, format="FLAC")
    with pytest.raises(UnicodeDecodeError):
        flac.decode("utf-8")
    labels, probabilities = _infer_files(service.url, [flac])
    assert len(labels) == 1 and probabilities.shape == (1, len(BUNDLED_LABELS))


def test_metrics_expose_stage_latency_and_batch_sizes(service: ServiceSettings, test_split: list[Utterance]) -> None:
    _infer_files(service.url, [u.data for u in test_split[:4]])
    transformer = urllib.request.urlopen(f"{service.url}/metrics", timeout=5).read().decode()
    predictor = (
        urllib.request.urlopen(f"http://127.0.0.1:{service.predictor_http_port}/metrics", timeout=5).read().decode()
    )
    for stage in ("decode", "features"):
        assert f'audio_maas_stage_seconds_count{{model="digits",stage="{stage}"}}' in transformer
    assert "request_predict_seconds_bucket" in transformer
    assert "audio_maas_batch_size_bucket" in predictor and "audio_maas_model_seconds_count" in predictor


def test_predict_command_prints_label_and_top3(
    service: ServiceSettings, fsdd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fsdd_dir / "recordings" / "4_nicolas_2.wav"
    assert main(["predict", "--url", service.url, str(path)]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(
        rf"{re.escape(str(path))}: 4  \(top-3 class_id: probability: 4: [01]\.\d{{3}}(, \d: [01]\.\d{{3}}){{2}}\)", line
    )


def test_predict_command_says_when_the_server_is_down(fsdd_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port_pair

    url = f"http://127.0.0.1:{free_port_pair()}"
    assert main(["predict", "--url", url, str(fsdd_dir / "recordings" / "4_nicolas_2.wav")]) == 1
    assert f"cannot reach {url}" in capsys.readouterr().err


def test_predictor_rejects_features_of_the_wrong_shape(service: ServiceSettings) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{service.predictor_http_port}")
    features = httpclient.InferInput("features", [1, 50, 40], "FP32")
    features.set_data_from_numpy(np.zeros((1, 50, 40), np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match=r"must have shape \[N, 101, 40\], got \[1, 50, 40\]"):
        client.infer("digits", [features])


GRPC_MISMATCH = """
import sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
client = grpcclient.InferenceServerClient(sys.argv[1])
features = grpcclient.InferInput("features", [1, 101, 40], "FP32")
features.set_data_from_numpy(np.zeros((1, 101, 40), np.float32))
try:
    client.infer("digits", [features], parameters={"audio_maas_model": "0123456789abcdef"})
    raise SystemExit("features for another model were answered")
except InferenceServerException as error:
    print(error.status(), error.message())
"""


def test_predictor_refuses_features_computed_for_another_model(service: ServiceSettings) -> None:
    """Features of the right shape, but computed with another model's spec or labels (the
    transformer says so in a parameter): 409 / FAILED_PRECONDITION naming both fingerprints."""
    from audio_maas.protocol.model_dir import model_fingerprint

    ours = model_fingerprint(BUNDLED_MODEL)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{service.predictor_http_port}")
    features = httpclient.InferInput("features", [1, 101, 40], "FP32")
    features.set_data_from_numpy(np.zeros((1, 101, 40), np.float32), binary_data=True)
    refusal = f"has feature spec and labels {ours}, the caller's are 0123456789abcdef"
    with pytest.raises(InferenceServerException, match=refusal) as caught:
        client.infer("digits", [features], parameters={"audio_maas_model": "0123456789abcdef"})
    assert caught.value.status() == "409"
    agreed = client.infer("digits", [features], parameters={"audio_maas_model": ours})
    assert agreed.as_numpy("probabilities").shape == (1, len(BUNDLED_LABELS))
    assert client.infer("digits", [features]).as_numpy("probabilities") is not None  # other clients send none
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_MISMATCH, f"127.0.0.1:{service.predictor_grpc_port}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert completed.stdout.startswith("StatusCode.FAILED_PRECONDITION") and ours in completed.stdout


def test_the_helm_test_check_passes_against_the_service_and_names_what_is_wrong(service: ServiceSettings) -> None:
    from audio_maas.client.check import check_deployment

    assert check_deployment(url=service.url, model_name="digits", timeout_s=10) in BUNDLED_LABELS
    with pytest.raises(RuntimeError, match=r"/v2/models/nope/ready did not answer 200 within 1 s"):
        check_deployment(url=service.url, model_name="nope", timeout_s=1)
