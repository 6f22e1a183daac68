"""Several models through one transformer and one predictor, each with its own front end,
labels and batches: the bundled digits CNN beside a tone LSTM trained here on another
feature grid (32 mel bands, 0.5 s clips) with three labels."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from audio_maas.cli import main
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.model_dir import model_directories
from audio_maas.serving.settings import ServiceSettings
from tests.conftest import (
    BUNDLED_LABELS,
    BUNDLED_MODEL,
    encode,
    loopback_settings,
    running_service,
    tone,
    wait_ready,
)

TONE_LABELS = {"low": 300.0, "mid": 1000.0, "high": 2500.0}


@pytest.fixture(scope="module")
def tones_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LSTM that tells 300 Hz, 1 kHz and 2.5 kHz apart, exported as any user's model would be."""
    from audio_maas.training.export import export_model
    from audio_maas.training.models import build_model

    spec = dataclasses.replace(FeatureSpec(), n_mels=32, clip_s=0.5)
    front_end = FrontEnd(spec)
    rng = np.random.default_rng(0)
    features, labels = [], []
    for label, frequency in enumerate(TONE_LABELS.values()):
        for take in range(30):
            waveform = tone(frequency_hz=frequency * rng.uniform(0.95, 1.05), seconds=0.4, sample_rate=16000)
            noise = 0.01 * (take % 2) * rng.standard_normal(len(waveform))  # clean and noisy takes alike
            waveform = (waveform + noise).astype(np.float32)
            features.append(front_end.from_waveform(waveform=waveform, sample_rate=16000))
            labels.append(label)
    x, y = np.stack(features), np.array(labels)
    model = build_model(arch="lstm", train_features=x, n_classes=len(TONE_LABELS))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=25, batch_size=16, verbose=0, shuffle=True)
    assert (model.predict(x, verbose=0).argmax(axis=1) == y).mean() == 1.0, "the tone model did not learn"
    model_dir = tmp_path_factory.mktemp("repository") / "tones"
    export_model(model=model, spec=spec, labels=list(TONE_LABELS), model_dir=model_dir, check_features=x[:4])
    return model_dir


@pytest.fixture(scope="module")
def repository(tones_model: Path) -> Path:
    """A model repository: the tone model beside the bundled digits CNN."""
    (tones_model.parent / "digits").symlink_to(BUNDLED_MODEL, target_is_directory=True)
    return tones_model.parent


@pytest.fixture(scope="module")
def two_models(repository: Path) -> Iterator[ServiceSettings]:
    settings = loopback_settings()
    with running_service(settings, models=["--model-repository", str(repository)]):
        yield settings


def _wav(frequency_hz: float) -> bytes:
    return encode(tone(frequency_hz=frequency_hz, seconds=0.4, sample_rate=22050), sample_rate=22050, format="WAV")


def _infer(settings: ServiceSettings, model: str, files: list[bytes]) -> tuple[list[str], np.ndarray]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{settings.http_port}")
    audio = httpclient.InferInput("audio", [len(files)], "BYTES")
    audio.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    result = client.infer(model, [audio])
    return [label.decode() for label in result.as_numpy("label")], result.as_numpy("probabilities")


def test_each_model_answers_with_its_own_labels_and_front_end(two_models: ServiceSettings, fsdd_dir: Path) -> None:
    digit = (fsdd_dir / "recordings" / "7_theo_0.wav").read_bytes()
    labels, probabilities = _infer(two_models, "digits", [digit])
    assert labels == ["7"] and probabilities.shape == (1, len(BUNDLED_LABELS))
    labels, probabilities = _infer(two_models, "tones", [_wav(f) for f in TONE_LABELS.values()])
    assert labels == list(TONE_LABELS) and probabilities.shape == (3, 3)


def test_metadata_names_each_models_tensors_on_both_servers(two_models: ServiceSettings) -> None:
    transformer = f"http://127.0.0.1:{two_models.http_port}/v2/models"
    predictor = f"http://127.0.0.1:{two_models.predictor_http_port}/v2/models"
    for name, classes, grid in [("digits", len(BUNDLED_LABELS), [101, 40]), ("tones", 3, [51, 32])]:
        outputs = {o["name"]: o for o in requests.get(f"{transformer}/{name}", timeout=5).json()["outputs"]}
        assert outputs["probabilities"]["shape"] == [-1, classes]
        assert requests.get(f"{predictor}/{name}", timeout=5).json()["inputs"][0]["shape"] == [-1, *grid]


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
report = {}
for model, path in zip(sys.argv[2::2], sys.argv[3::2]):
    audio = grpcclient.InferInput("audio", [1], "BYTES")
    audio.set_data_from_numpy(np.array([open(path, "rb").read()], dtype=object))
    report[model] = client.infer(model, [audio]).as_numpy("label")[0].decode()
print(json.dumps(report))
"""


def test_grpc_reaches_each_model(two_models: ServiceSettings, fsdd_dir: Path, tmp_path: Path) -> None:
    """tritonclient.grpc in its own process, as in ``test_service``."""
    high = tmp_path / "high.wav"
    high.write_bytes(_wav(TONE_LABELS["high"]))
    arguments = ["digits", str(fsdd_dir / "recordings" / "3_theo_0.wav"), "tones", str(high)]
    completed = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, f"127.0.0.1:{two_models.grpc_port}", *arguments],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(completed.stdout) == {"digits": "3", "tones": "high"}


def _batched_rows(metrics_url: str, model: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    match = re.search(rf'^audio_maas_batch_size_sum{{model="{model}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_rows_of_different_models_never_share_a_model_call(two_models: ServiceSettings, fsdd_dir: Path) -> None:
    """Both models under concurrent load: each model's calls carry exactly its own rows."""
    import tritonclient.http.aio as aio

    metrics = f"http://127.0.0.1:{two_models.predictor_http_port}/metrics"
    before = {model: _batched_rows(metrics, model) for model in ("digits", "tones")}
    digit, high = (fsdd_dir / "recordings" / "5_theo_1.wav").read_bytes(), _wav(TONE_LABELS["high"])

    async def load() -> list[str]:
        client = aio.InferenceServerClient(f"127.0.0.1:{two_models.http_port}", conn_limit=16)

        async def one(model: str, data: bytes) -> str:
            audio = aio.InferInput("audio", [1], "BYTES")
            audio.set_data_from_numpy(np.array([data], dtype=object), binary_data=True)
            return str((await client.infer(model, [audio])).as_numpy("label")[0].decode())

        try:
            return await asyncio.gather(
                *(one(m, d) for _ in range(40) for m, d in (("digits", digit), ("tones", high)))
            )
        finally:
            await client.close()

    labels = asyncio.run(load())
    assert labels == ["5", "high"] * 40
    after = {model: _batched_rows(metrics, model) for model in ("digits", "tones")}
    assert {model: after[model] - before[model] for model in after} == {"digits": 40, "tones": 40}


def test_serve_refuses_what_it_cannot_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twin = tmp_path / "elsewhere" / BUNDLED_MODEL.name
    twin.parent.mkdir()
    twin.symlink_to(BUNDLED_MODEL)
    cases = [
        (["--model", str(BUNDLED_MODEL), "--model", str(twin)], "two models would be served as 'digits'"),
        (["--model", str(BUNDLED_MODEL), "--model-repository", str(tmp_path)], "not both"),
        (["--model-repository", str(tmp_path)], f"model repository {tmp_path} holds no model directory"),
        (["--model", str(tmp_path)], "is not a SavedModel directory"),
        (["--model-name", "x"], "--model-name names the one --model"),
    ]
    for arguments, message in cases:
        assert main(["serve", *arguments]) == 2
        assert message in capsys.readouterr().err


def test_a_repository_is_read_as_name_to_directory(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()  # no SavedModel: not a model
    (tmp_path / "tones").symlink_to(BUNDLED_MODEL, target_is_directory=True)
    assert model_directories(tmp_path) == {"tones": tmp_path / "tones"}
    assert set(model_directories(BUNDLED_MODEL.parent)) == {"digits", "digits-lstm", "sounds"}
    (tmp_path / "bad name").symlink_to(BUNDLED_MODEL, target_is_directory=True)
    with pytest.raises(ValueError, match="'bad name' is not a model name"):
        model_directories(tmp_path)


def _repository(settings: ServiceSettings, path: str, body: object | None = None) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{settings.http_port}/v2/repository{path}", json=body, timeout=120)


def test_the_index_lists_every_model_with_its_version_and_state(two_models: ServiceSettings) -> None:
    index = _repository(two_models, "/index")
    assert index.status_code == 200
    assert index.json() == [
        {"name": "digits", "version": "1", "state": "READY"},
        {"name": "tones", "version": "1", "state": "READY"},
    ]
    assert _repository(two_models, "/index", {"ready": "yes"}).json() == {
        "error": "the index request takes one optional field, 'ready', true or false"
    }


def test_a_model_unloaded_and_loaded_again_under_traffic_costs_the_other_nothing(
    two_models: ServiceSettings, fsdd_dir: Path
) -> None:
    """32 requests in flight on ``digits`` the whole time ``tones`` is unloaded and loaded again on
    both servers: none of them fails, and ``tones`` answers 404 in between, then answers again."""
    import tritonclient.http.aio as aio

    digit = (fsdd_dir / "recordings" / "2_theo_3.wav").read_bytes()
    steps: list[tuple[str, object]] = []

    async def scenario() -> list[str]:
        client = aio.InferenceServerClient(f"127.0.0.1:{two_models.http_port}", conn_limit=32)
        done = asyncio.Event()
        answers: list[str] = []

        async def digits_load() -> None:
            audio = aio.InferInput("audio", [1], "BYTES")
            audio.set_data_from_numpy(np.array([digit], dtype=object), binary_data=True)
            while not done.is_set():
                try:
                    answers.append((await client.infer("digits", [audio])).as_numpy("label")[0].decode())
                except Exception as error:  # counted, never raised: the test asserts there are none
                    answers.append(f"failed: {error}")

        async def cycle() -> None:
            await asyncio.sleep(1)

            def step(name: str, call: Any) -> None:
                response = call()
                steps.append((name, (response.status_code, response.json())))

            await asyncio.to_thread(step, "unload", lambda: _repository(two_models, "/models/tones/unload"))
            await asyncio.to_thread(step, "index", lambda: _repository(two_models, "/index"))
            infer = f"http://127.0.0.1:{two_models.http_port}/v2/models/tones/infer"
            body = {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": ["AAAA"]}]}
            await asyncio.to_thread(step, "infer", lambda: requests.post(infer, json=body, timeout=10))
            await asyncio.to_thread(step, "load", lambda: _repository(two_models, "/models/tones/load"))
            await asyncio.sleep(1)
            done.set()

        try:
            await asyncio.gather(cycle(), *(digits_load() for _ in range(32)))
        finally:
            await client.close()
        return answers

    answers = asyncio.run(scenario())
    assert len(answers) > 100 and set(answers) == {"2"}, [a for a in answers if a != "2"][:3]
    assert dict(steps) == {
        "unload": (200, {"name": "tones", "unload": True}),
        "index": (
            200,
            [
                {"name": "digits", "version": "1", "state": "READY"},
                {"name": "tones", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
            ],
        ),
        "infer": (404, {"error": "Model with name tones does not exist."}),
        "load": (200, {"name": "tones", "load": True}),
    }
    assert _infer(two_models, "tones", [_wav(TONE_LABELS["low"])])[0] == ["low"]


def test_loads_and_unloads_of_one_model_at_once_take_turns(two_models: ServiceSettings) -> None:
    """Four loads of one model and an unload, sent together: each waits for the one before, so all
    succeed (the model is served throughout, so even the unload finds it), none a 500."""
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda path: _repository(two_models, path), [
            "/models/tones/load", "/models/tones/load", "/models/tones/unload",
            "/models/tones/load", "/models/tones/load",
        ]))  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    _repository(two_models, "/models/tones/load").raise_for_status()
    states = {entry["name"]: entry["state"] for entry in _repository(two_models, "/index").json()}
    assert states == {"digits": "READY", "tones": "READY"}
    assert _infer(two_models, "tones", [_wav(TONE_LABELS["low"])])[0] == ["low"]


def test_a_model_whose_spec_disagrees_fails_to_load_with_the_reason(
    two_models: ServiceSettings, repository: Path, fsdd_dir: Path
) -> None:
    broken = repository / "broken"
    shutil.copytree(repository / "tones", broken)
    spec = FeatureSpec.read(broken)
    dataclasses.replace(spec, n_mels=24).write(broken)  # features the SavedModel does not take
    try:
        response = _repository(two_models, "/models/broken/load")
        assert response.status_code == 400
        assert response.json()["error"].startswith("model 'broken' failed to load: the predictor did not take a probe")
        index = {entry["name"]: entry for entry in _repository(two_models, "/index").json()}
        assert index["broken"]["state"] == "UNAVAILABLE" and "did not take a probe" in index["broken"]["reason"]
        assert _repository(two_models, "/models/nope/load").json() == {
            "error": "the model repository has no model 'nope'"
        }
        labels, _ = _infer(two_models, "digits", [(fsdd_dir / "recordings" / "9_theo_0.wav").read_bytes()])
        assert labels == ["9"]
    finally:
        shutil.rmtree(broken)


def test_grpc_unloads_and_loads_and_an_unloaded_model_is_not_found(two_models: ServiceSettings) -> None:
    """KServe's stubs from the protocol's proto (see ``test_errors``): tritonclient.grpc cannot
    share this process with KServe's protobuf module."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    def code(call: Any, request: Any) -> grpc.StatusCode:
        try:
            call(request, timeout=120)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    infer = pb.ModelInferRequest(
        model_name="tones",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="audio", datatype="BYTES", shape=[1])],
        raw_input_contents=[len(_wav(300)).to_bytes(4, "little") + _wav(300)],
    )
    with grpc.insecure_channel(f"127.0.0.1:{two_models.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="tones")).isUnloaded
        assert code(stub.ModelReady, pb.ModelReadyRequest(name="tones")) == grpc.StatusCode.NOT_FOUND
        assert code(stub.ModelInfer, infer) == grpc.StatusCode.NOT_FOUND
        assert stub.ServerReady(pb.ServerReadyRequest()).ready  # every model it serves is ready
        assert stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="tones")).isLoaded
        assert stub.ModelReady(pb.ModelReadyRequest(name="tones")).ready
        assert code(stub.ModelInfer, infer) == grpc.StatusCode.OK
        missing = pb.RepositoryModelLoadRequest(model_name="nope")
        assert code(stub.RepositoryModelLoad, missing) == grpc.StatusCode.NOT_FOUND


def test_the_models_command_prints_the_index_and_predict_picks_a_model(
    two_models: ServiceSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["models", "--url", two_models.url]) == 0
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[0].split() == ["NAME", "VERSION", "STATE", "REASON"]
    states = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert states["digits"] == states["tones"] == ["1", "READY"]
    mid = tmp_path / "mid.wav"
    mid.write_bytes(_wav(TONE_LABELS["mid"]))
    assert main(["predict", "--url", two_models.url, "--model", "tones", str(mid)]) == 0
    assert capsys.readouterr().out.startswith(f"{mid}: mid  (top-3 class_id: probability: 1: ")


def test_a_repository_broken_while_serving_is_named_and_what_is_served_stays_listed(
    two_models: ServiceSettings, repository: Path
) -> None:
    odd = repository / "no spaces in URLs"
    odd.symlink_to(BUNDLED_MODEL, target_is_directory=True)
    try:
        index = _repository(two_models, "/index")
        assert index.status_code == 200
        assert [entry["name"] for entry in index.json()] == ["digits", "tones"]
        response = _repository(two_models, "/models/tones/load")
        assert response.status_code == 503
        assert response.json()["error"].startswith("the model repository cannot be read: model directory ")
    finally:
        odd.unlink()
    assert _repository(two_models, "/models/tones/load").status_code == 200


GRPC_EACH_MODEL = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
answers = {}
for model, path in json.loads(sys.argv[2]).items():
    audio = grpcclient.InferInput("audio", [1], "BYTES")
    audio.set_data_from_numpy(np.array([open(path, "rb").read()], dtype=object))
    answers[model] = client.infer(model, [audio]).as_numpy("label")[0].decode()
print(json.dumps(answers))
"""


def test_one_serve_answers_every_bundled_model_with_its_own_labels(fsdd_dir: Path) -> None:
    """`audio-maas serve` with no model flags: digits, digits-lstm and sounds through one transformer
    and one predictor, each with its own labels in metadata and answers, over HTTP and gRPC."""
    from audio_maas.protocol.model_dir import read_labels

    esc10 = fsdd_dir.parent / "esc10"
    folders = sorted(folder for folder in esc10.iterdir() if folder.is_dir())
    sounds = {folder.name.split(" - ", 1)[1]: sorted(folder.glob("4-*.ogg"))[0] for folder in folders}  # fold 4: test
    digits = sorted((fsdd_dir / "recordings").glob("*_theo_4.wav"))  # take 4: FSDD's test split
    settings = loopback_settings()
    with running_service(settings, models=()) as process:
        for model in ("digits-lstm", "sounds"):
            wait_ready(f"{settings.url}/v2/models/{model}/ready", process=process)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{settings.http_port}")
        for model in ("digits", "digits-lstm", "sounds"):
            labels = read_labels(BUNDLED_MODEL.parent / model)
            (probabilities,) = [o for o in client.get_model_metadata(model)["outputs"] if o["name"] == "probabilities"]
            assert probabilities["shape"] == [-1, len(labels)], model
        for model in ("digits", "digits-lstm"):
            answers = _infer(settings, model, [path.read_bytes() for path in digits])[0]
            right = sum(answer == path.name[0] for answer, path in zip(answers, digits, strict=True))
            assert right >= 0.9 * len(digits), (model, answers)
        answers = _infer(settings, "sounds", [path.read_bytes() for path in sounds.values()])[0]
        assert set(answers) <= set(read_labels(BUNDLED_MODEL.parent / "sounds"))
        assert sum(answer == label for answer, label in zip(answers, sounds, strict=True)) >= 7, answers
        paths = {"digits": str(digits[0]), "digits-lstm": str(digits[0]), "sounds": str(next(iter(sounds.values())))}
        completed = subprocess.run(
            [sys.executable, "-c", GRPC_EACH_MODEL, f"127.0.0.1:{settings.grpc_port}", json.dumps(paths)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        over_http = {model: _infer(settings, model, [Path(path).read_bytes()])[0][0] for model, path in paths.items()}
        assert json.loads(completed.stdout) == over_http
